#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# POSIX conformance of the mount (issue 8 item 8): every operation of the contract, its success
# behaviour and its errors, as root and as the unprivileged user 65534, checked against POSIX
# and the Linux man pages by posix.py. All cases run; each failure is printed with what was
# expected and what was seen, and the test fails if any check failed.
. "$(dirname "$0")/lib.sh"
kvfs_setup ls sh
kvfs_start -o allow_other

# WORK is 0700 (mktemp): the unprivileged user must be able to walk to the mount point.
chmod 711 "$WORK"

step "posix.py: all cases"
st=0
python3 "$LIB_DIR/posix.py" "$MNT" || st=$?
case $st in
0) ;;
1) fail "posix.py: some checks failed (listed above)" ;;
*) fail "posix.py could not run (status $st)" ;;
esac
