# orderflow %postun: systemd forgets the unit; on erase the generated secrets go too. The state
# in /var/lib/orderflow and the orderflow user stay, as Fedora's guidelines want (rpm has no
# purge); remove them by hand when wanted.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ]; then
    rm -rf /etc/orderflow/secrets
fi
exit 0
