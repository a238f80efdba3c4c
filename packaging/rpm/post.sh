# orderflow %post: a random JWT signing key when there is none, and systemd told about the unit.
# The service is neither enabled nor started: configure Kafka, MariaDB and Redis first.
if [ ! -d /etc/orderflow/secrets ]; then
    mkdir -p /etc/orderflow/secrets
    chown root:orderflow /etc/orderflow/secrets
    chmod 0750 /etc/orderflow/secrets
fi
if [ ! -e /etc/orderflow/secrets/jwt-secret ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 -w0 >/etc/orderflow/secrets/jwt-secret.new)
    chown orderflow:orderflow /etc/orderflow/secrets/jwt-secret.new
    chmod 0600 /etc/orderflow/secrets/jwt-secret.new
    mv /etc/orderflow/secrets/jwt-secret.new /etc/orderflow/secrets/jwt-secret
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
