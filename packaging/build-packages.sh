#!/usr/bin/env bash
# Builds the .deb and .rpm packages of orderflow into OUT_DIR:
#   packaging/build-packages.sh OUT_DIR [BUILD_DIR]      (BUILD_DIR default: build-pkg)
# One build with prefix /usr serves both: the .deb is made with Debian's layout (multiarch
# libdir, the unit in /lib/systemd/system), then the build is reconfigured - nothing is
# recompiled - with Fedora's (lib64, /usr/lib/systemd/system, libraries mode 0755) for the .rpm.
set -euo pipefail
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build-packages.sh OUT_DIR [BUILD_DIR]}
build=${2:-$root/build-pkg}
mkdir -p "$out"
out=$(cd "$out" && pwd)
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr
  -DOF_BUILD_TESTS=OFF -DOF_SYSTEM_INSTALL=ON)
# The distribution's hardening flags (fortify, stack protector, relro, bind-now, PIE).
if command -v dpkg-buildflags >/dev/null; then
  export DEB_BUILD_MAINT_OPTIONS=hardening=+all
  common+=(-DCMAKE_C_FLAGS="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS)"
    -DCMAKE_EXE_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)"
    -DCMAKE_SHARED_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)"
    -DCMAKE_MODULE_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)")
fi

echo "== configure and build ($build)"
cmake -S "$root" -B "$build" "${common[@]}" -DOF_PACKAGE_FLAVOR=deb -UCMAKE_INSTALL_LIBDIR \
  -DCMAKE_INSTALL_SO_NO_EXE=1 >/dev/null
cmake --build "$build" -- -j"${OF_JOBS:-$(nproc)}"
echo "== .deb"
(cd "$build" && cpack -G DEB -B "$out/_cpack-deb" >/dev/null)
mv "$out"/_cpack-deb/*.deb "$out/"
if command -v rpmbuild >/dev/null; then
  echo "== .rpm"
  cmake -S "$root" -B "$build" "${common[@]}" -DOF_PACKAGE_FLAVOR=rpm \
    -DCMAKE_INSTALL_LIBDIR=lib64 -DCMAKE_INSTALL_SO_NO_EXE=0 >/dev/null
  cmake --build "$build" -- -j"${OF_JOBS:-$(nproc)}" >/dev/null
  (cd "$build" && cpack -G RPM -B "$out/_cpack-rpm" >/dev/null)
  mv "$out"/_cpack-rpm/*.rpm "$out/"
else
  echo "build-packages.sh: rpmbuild not found (apt-get install rpm): no .rpm" >&2
fi
rm -rf "$out/_cpack-deb" "$out/_cpack-rpm"
ls -l "$out"
