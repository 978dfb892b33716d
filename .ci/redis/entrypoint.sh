#!/bin/sh
# As the official image does: a server started without a config file is not protected
# (its port is reachable only where the container's network allows).
if [ "$1" = "redis-server" ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
