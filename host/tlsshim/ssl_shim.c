/* The libssl.so shim (host/tlsshim/CMakeLists.txt): OpenSSL 1.1 names that civetweb 1.15 looks
 * up and OpenSSL 3 renamed or removed, forwarded to their OpenSSL 3 equivalents. Everything else
 * civetweb asks for resolves through this library's DT_NEEDED libssl.so.3. */

/* Opaque OpenSSL types; the OpenSSL headers are not included on purpose (in OpenSSL 3 they define
 * SSL_get_peer_certificate as a macro for SSL_get1_peer_certificate). */
struct ssl_st;
struct x509_st;

extern struct x509_st *SSL_get1_peer_certificate(const struct ssl_st *s);

__attribute__((visibility("default"))) struct x509_st *
SSL_get_peer_certificate(const struct ssl_st *s);

/* OpenSSL 3 kept the semantics (a new reference the caller frees) under the new name. */
struct x509_st *SSL_get_peer_certificate(const struct ssl_st *s)
{
    return SSL_get1_peer_certificate(s);
}
