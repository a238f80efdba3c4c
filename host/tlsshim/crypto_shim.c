/* The libcrypto.so shim (host/tlsshim/CMakeLists.txt). Every libcrypto function civetweb 1.15
 * looks up still exists in OpenSSL 3, so this library defines none: it only gives civetweb's
 * dlopen("libcrypto.so") an object with that SONAME whose dependency is libcrypto.so.3, so no
 * libssl-dev symlink is needed at run time. */

/* Identifies the shim (and keeps this translation unit non-empty). */
__attribute__((visibility("default"))) const char of_tlsshim_crypto[] = "orderflow libcrypto shim";
