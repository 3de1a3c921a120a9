#!/usr/bin/env bash
# Build the one-folder app (dist/mmstudio/) and the Debian package (dist/mmstudio_VERSION_amd64.deb).
#
#     packaging/build-linux.sh
#
# Runs from a clean clone with only Python 3.10+ and dpkg-deb: it makes its own build environment
# (build/venv, the CPU build of torch) unless BUILD_VENV names an existing one.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
VENV=${BUILD_VENV:-build/venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # The CPU build first: a bare `torch` requirement would pull the multi-GB CUDA build into the installer.
    "$VENV/bin/pip" install -q "torch==2.13.0"
    "$VENV/bin/pip" install -q . "pyinstaller>=6.10"
fi

VERSION=$("$VENV/bin/python" -c "import mmstudio; print(mmstudio.__version__)")
rm -rf dist/mmstudio build/pyinstaller
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller mmstudio.spec

# Prove the bundle works before packing it: every built-in model, the window, a 5-step job.
QT_QPA_PLATFORM=offscreen dist/mmstudio/mmstudio --self-test

# The Debian package: the app under /opt/mmstudio, `mmstudio` on the PATH, a desktop entry and its icon.
ROOT=build/deb
rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/usr/share/applications" \
         "$ROOT/usr/share/icons/hicolor/256x256/apps"
cp -a dist/mmstudio "$ROOT/opt/mmstudio"
ln -s /opt/mmstudio/mmstudio "$ROOT/usr/bin/mmstudio"
install -m 644 packaging/linux/mmstudio.desktop "$ROOT/usr/share/applications/mmstudio.desktop"
install -m 644 resources/icons/mmstudio-256.png "$ROOT/usr/share/icons/hicolor/256x256/apps/mmstudio.png"
SIZE_KB=$(du -sk "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE_KB@/$SIZE_KB/" packaging/linux/control > "$ROOT/DEBIAN/control"
install -m 755 packaging/linux/postrm "$ROOT/DEBIAN/postrm"
DEB="dist/mmstudio_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group -Zzstd --build "$ROOT" "$DEB" >/dev/null

echo "bundle:  dist/mmstudio  $(du -sh dist/mmstudio | cut -f1)"
echo "package: $DEB  $(du -sh "$DEB" | cut -f1)"
echo "built in $(( $(date +%s) - started )) s"
