# Sourced by set-up scripts that build from a Debian source package: `enable_deb_src` adds the
# distribution's deb-src entry when none is configured and returns 0 if it added one (the caller
# then runs `apt-get update`), 1 if one was already there. Uses $SUDO as the caller set it.
enable_deb_src() {
  if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list; then
    return 1
  fi
  . /etc/os-release
  $SUDO tee /etc/apt/sources.list.d/kiln-deb-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}
