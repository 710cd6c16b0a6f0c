#!/bin/sh
# Sends a network namespace's TCP connections through a transparent skproxy (listeners with
# `transparent: true`, see config/examples/sidecar-transparent.yaml), with nftables redirect rules in a
# table of their own, `inet skproxy`:
#   outbound  connections the namespace's applications open go to skproxy's outbound listener, which
#             connects on to the address they asked for;
#   inbound   connections arriving from outside go to skproxy's inbound listener, which connects on to
#             the application's port.
# skproxy's own upstream connections carry SO_MARK (the config's upstream_mark) and pass untouched, as do
# loopback destinations and the ports left alone (the admin port among them).
#
#   skproxy-redirect.sh install   replace the table with the rules below (idempotent, one transaction)
#   skproxy-redirect.sh remove    delete the table (idempotent)
#   skproxy-redirect.sh status    print the installed table; exit 1 when there is none
#   skproxy-redirect.sh print     print the rules `install` would load, without loading them
#
# Settings (environment):
#   SKPROXY_MARK=0x534b           upstream_mark of skproxy's config
#   SKPROXY_OUTBOUND_PORT=15001   port of the outbound transparent listener
#   SKPROXY_INBOUND_PORT=15006    port of the inbound transparent listener
#   SKPROXY_INTERCEPT=outbound,inbound   which directions to intercept
#   SKPROXY_ADMIN_PORT=9901       skproxy's admin port: always left alone
#   SKPROXY_SKIP_PORTS=22         more ports left alone in both directions (comma-separated)
# Needs nft (package nftables) and CAP_NET_ADMIN in the namespace.
set -eu

mark=${SKPROXY_MARK:-0x534b}
outbound_port=${SKPROXY_OUTBOUND_PORT:-15001}
inbound_port=${SKPROXY_INBOUND_PORT:-15006}
intercept=${SKPROXY_INTERCEPT:-outbound,inbound}
admin_port=${SKPROXY_ADMIN_PORT:-9901}
skip_ports=${SKPROXY_SKIP_PORTS:-22}
table="inet skproxy"

die() { echo "skproxy-redirect: $*" >&2; exit 2; }

is_port() { case $1 in '' | *[!0-9]*) return 1 ;; esac; [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# Checked here rather than left to nft, whose errors point into generated text.
validate() {
  case $mark in
    0x*) hex=${mark#0x}; case $hex in '' | *[!0-9a-fA-F]*) die "SKPROXY_MARK '$mark' is not a number" ;; esac ;;
    '' | *[!0-9]*) die "SKPROXY_MARK '$mark' is not a number" ;;
  esac
  [ "$((mark))" -ne 0 ] || die "SKPROXY_MARK must not be 0: skproxy's upstream connections would be redirected too"
  for p in "$outbound_port" "$inbound_port" "$admin_port"; do is_port "$p" || die "'$p' is not a port (1-65535)"; done
  old_ifs=$IFS; IFS=,
  for p in $skip_ports; do is_port "$p" || die "SKPROXY_SKIP_PORTS: '$p' is not a port (1-65535)"; done
  outbound=no inbound=no
  for d in $intercept; do
    case $d in
      outbound) outbound=yes ;;
      inbound) inbound=yes ;;
      *) die "SKPROXY_INTERCEPT: '$d' is neither outbound nor inbound" ;;
    esac
  done
  IFS=$old_ifs
}

rules() {
  skip="$admin_port"
  old_ifs=$IFS; IFS=,
  for p in $skip_ports; do skip="$skip, $p"; done
  IFS=$old_ifs
  # Declaring the table before deleting it makes the delete succeed when there was none: the file then
  # replaces any earlier version in one transaction, with no moment without rules.
  cat <<RULES
table $table
delete table $table
table $table {
	set skip_ports {
		type inet_service
		flags interval
		auto-merge
		elements = { $skip }
	}
RULES
  if [ "$outbound" = yes ]; then cat <<RULES
	chain outbound {
		type nat hook output priority -100; policy accept;
		meta l4proto != tcp return
		meta mark $mark return comment "skproxy's own upstream connections"
		ip daddr 127.0.0.0/8 return
		ip6 daddr ::1 return
		tcp dport @skip_ports return
		meta l4proto tcp counter redirect to :$outbound_port
	}
RULES
  fi
  if [ "$inbound" = yes ]; then cat <<RULES
	chain inbound {
		type nat hook prerouting priority -100; policy accept;
		meta l4proto != tcp return
		iifname "lo" return
		tcp dport @skip_ports return
		meta l4proto tcp counter redirect to :$inbound_port
	}
RULES
  fi
  echo "}"
}

need_nft() { command -v nft >/dev/null 2>&1 || die "nft not found (install the nftables package)"; }

case ${1:-} in
  install)
    validate
    need_nft
    rules | nft -f -
    ;;
  remove)
    need_nft
    printf 'table %s\ndelete table %s\n' "$table" "$table" | nft -f -
    ;;
  status)
    need_nft
    nft list table $table 2>/dev/null || { echo "skproxy-redirect: no table $table" >&2; exit 1; }
    ;;
  print)
    validate
    rules
    ;;
  *)
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
