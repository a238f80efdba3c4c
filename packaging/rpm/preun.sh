# orderflow %preun: on erase (not upgrade) the service is stopped and disabled.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now orderflowd.service >/dev/null 2>&1 || :
fi
exit 0
