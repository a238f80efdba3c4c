# CPack: two .deb and two .rpm packages from the components runtime and dev.
#   cpack -G DEB   (in a build configured by packaging/build-packages.sh)
set(CPACK_PACKAGE_NAME orderflow)
set(CPACK_PACKAGE_VENDOR "orderflow")
set(CPACK_PACKAGE_CONTACT "orderflow maintainers <orderflow@example.org>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# Each package's summary is the first line of its own description: CPackDeb prepends
# CPACK_PACKAGE_DESCRIPTION_SUMMARY unless it is CPack's default, so it is left at that.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_NAME} built using CMake")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://github.com/orderflow/orderflow")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
# System paths (/etc, /lib/systemd, /var/lib): neither package is relocatable.
set(CPACK_PACKAGE_RELOCATABLE OFF)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_COMPONENT_RUNTIME_DISPLAY_NAME "orderflow daemon and CLI")
set(CPACK_COMPONENT_DEV_DISPLAY_NAME "orderflow stage SDK")
set(CPACK_COMPONENT_DEV_DEPENDS runtime)
set(CPACK_GENERATOR DEB RPM)
set(_of_pkg "${CMAKE_CURRENT_LIST_DIR}")

# ---- Debian -------------------------------------------------------------------------------
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE "${OF_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${CPACK_PACKAGE_HOMEPAGE_URL}")
# Library dependencies come from dpkg-shlibdeps (the Debian names with their minimum versions:
# librdkafka1, libmariadb3, libhiredis0.14, libyaml-0-2, libjwt0, libjansson4, libcivetweb1,
# libssl3, libcrypt1, libc6); tests/packaging/packages.sh checks they are all there.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME orderflow)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION net)
# adduser for postinst. (libssl3, which civetweb dlopen()s for TLS, comes from dpkg-shlibdeps
# through the TLS shims that link it.)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SUGGESTS "kafka, mariadb-server, redis-server")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "event-driven pipeline host with shared-object stages
orderflowd hosts pipelines of stage plugins wired together by Kafka topics,
with MariaDB as the system of record, Redis as a cache and an HTTP gateway
with JWT authentication. This package holds the daemon, the orderflow
command line, the order-processing plugins (auth, orders, inventory,
payment, notification), their pipelines as configuration and a hardened
systemd unit. The service is not started at installation: configure
/etc/orderflow/orderflow.yaml first.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    "${_of_pkg}/deb/postinst;${_of_pkg}/deb/prerm;${_of_pkg}/deb/postrm;${_of_pkg}/deb/conffiles")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME orderflow-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE amd64)
# The harness library: a shlibs file, and ldconfig by trigger (no ldconfig in scripts).
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # only the harness has a versioned SONAME
set(CPACK_DEBIAN_DEV_PACKAGE_CONTROL_EXTRA
    "${_of_pkg}/deb/dev/postinst;${_of_pkg}/deb/dev/postrm;${_of_pkg}/deb/dev/triggers")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "orderflow (= ${OF_PACKAGE_VERSION})")
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "cmake, gcc | c-compiler, pkgconf | pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION "stage SDK for the orderflow pipeline host
The headers of orderflow's versioned stage ABI, the in-memory test harness
library, pkg-config files and a CMake package (find_package(Orderflow))
for building stage plugins out of tree, the example stage, and the
templates of `orderflow new-stage NAME`, which writes a stage project
that builds and passes its harness test as written.")

# ---- RPM (Fedora / RHEL names) ---------------------------------------------------------------
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE "${OF_PACKAGE_RELEASE}")
set(CPACK_RPM_PACKAGE_RELEASE_DIST ON)
set(CPACK_RPM_PACKAGE_LICENSE "LicenseRef-orderflow")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_PACKAGE_URL "${CPACK_PACKAGE_HOMEPAGE_URL}")
# Dependencies by package name, not by the sonames of the build machine: rpmbuild's automatic
# requirements would name the libraries this build linked (Debian's when built here), and its
# automatic provides would advertise the TLS shims (libssl.so) to the whole system.
set(CPACK_RPM_PACKAGE_AUTOREQ OFF)
set(CPACK_RPM_PACKAGE_AUTOPROV OFF)
# No /usr/lib/.build-id links: they would clash between packages built from one tree.
set(CPACK_RPM_SPEC_MORE_DEFINE "%define _build_id_links none
%define packager ${CPACK_PACKAGE_CONTACT}")
set(CPACK_RPM_RUNTIME_PACKAGE_NAME orderflow)
set(CPACK_RPM_RUNTIME_PACKAGE_SUMMARY "Event-driven pipeline host with shared-object stages")
set(CPACK_RPM_RUNTIME_PACKAGE_REQUIRES
    "glibc, librdkafka, mariadb-connector-c, hiredis, libyaml, libjwt, jansson, civetweb, openssl-libs, libxcrypt")
set(CPACK_RPM_RUNTIME_PACKAGE_REQUIRES_PRE "shadow-utils")
set(CPACK_RPM_RUNTIME_PACKAGE_REQUIRES_POST "coreutils")
string(FIND "${CPACK_DEBIAN_RUNTIME_DESCRIPTION}" "\n" _nl)
math(EXPR _nl "${_nl} + 1")
string(SUBSTRING "${CPACK_DEBIAN_RUNTIME_DESCRIPTION}" ${_nl} -1 CPACK_RPM_RUNTIME_PACKAGE_DESCRIPTION)
set(CPACK_RPM_RUNTIME_PRE_INSTALL_SCRIPT_FILE "${_of_pkg}/rpm/pre.sh")
set(CPACK_RPM_RUNTIME_POST_INSTALL_SCRIPT_FILE "${_of_pkg}/rpm/post.sh")
set(CPACK_RPM_RUNTIME_PRE_UNINSTALL_SCRIPT_FILE "${_of_pkg}/rpm/preun.sh")
set(CPACK_RPM_RUNTIME_POST_UNINSTALL_SCRIPT_FILE "${_of_pkg}/rpm/postun.sh")
set(CPACK_RPM_RUNTIME_USER_FILELIST
    "%config(noreplace) /etc/orderflow/orderflow.yaml"
    "%config(noreplace) /etc/orderflow/pipelines/orders.yaml"
    "%config(noreplace) /etc/orderflow/pipelines/accounts.yaml"
    "%dir %attr(0750,orderflow,orderflow) /var/lib/orderflow")
# Fedora's naming: the development package is -devel (it provides orderflow-dev too).
set(CPACK_RPM_DEV_PACKAGE_NAME orderflow-devel)
set(CPACK_RPM_DEV_PACKAGE_SUMMARY "Stage SDK for the orderflow pipeline host")
set(CPACK_RPM_DEV_PACKAGE_ARCHITECTURE x86_64)
set(CPACK_RPM_DEV_PACKAGE_GROUP "Development/Libraries")
set(CPACK_RPM_DEV_PACKAGE_REQUIRES "orderflow = ${OF_PACKAGE_VERSION}, cmake-filesystem, pkgconf-pkg-config")
# What rpmbuild's automatic provides would say about the SDK's pkg-config and CMake files.
set(CPACK_RPM_DEV_PACKAGE_PROVIDES "orderflow-dev = ${OF_PACKAGE_VERSION}, pkgconfig(orderflow) = ${PROJECT_VERSION}, pkgconfig(orderflow-harness) = ${PROJECT_VERSION}, cmake(Orderflow) = ${PROJECT_VERSION}, liborderflow-harness.so.1()(64bit)")
set(CPACK_RPM_DEV_POST_INSTALL_SCRIPT_FILE "${_of_pkg}/rpm/devel-ldconfig.sh")
set(CPACK_RPM_DEV_POST_UNINSTALL_SCRIPT_FILE "${_of_pkg}/rpm/devel-ldconfig.sh")
string(FIND "${CPACK_DEBIAN_DEV_DESCRIPTION}" "\n" _nl)
math(EXPR _nl "${_nl} + 1")
string(SUBSTRING "${CPACK_DEBIAN_DEV_DESCRIPTION}" ${_nl} -1 CPACK_RPM_DEV_PACKAGE_DESCRIPTION)
# Folders the distribution's own packages (filesystem, systemd, man-db, ...) own.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /usr/sbin /lib /lib/systemd /lib/systemd/system /usr/lib/systemd
    /usr/lib/systemd/system /usr/lib/sysusers.d /usr/lib64/pkgconfig /usr/lib64/cmake
    /usr/share/man /usr/share/man/man1 /usr/share/man/man5 /usr/share/man/man8 /var /var/lib
    /usr/share/doc)
# Description is set per component; CPack wants a default too.
set(CPACK_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_RUNTIME_DESCRIPTION}")

include(CPack)
