#!/bin/sh
# Installed as /usr/bin/@NAME@ by the medsr-viewer package: starts the frozen app in /opt.
exec /opt/medsr-viewer/medsr-viewer @ARGS@"$@"
