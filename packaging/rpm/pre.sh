# orderflow %pre: the system user (before the files, so %attr can name it).
getent group orderflow >/dev/null || groupadd -r orderflow
getent passwd orderflow >/dev/null ||
    useradd -r -g orderflow -d /var/lib/orderflow -M -s /sbin/nologin \
        -c "orderflow pipeline host" orderflow
exit 0
