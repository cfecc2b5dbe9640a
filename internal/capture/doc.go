// Package capture builds the nftables rules that send a pod's outbound TCP
// to the proxy, and installs them in the current network namespace.
//
// One rule model (Ruleset) yields both the netlink messages sent to the
// kernel and the `nft` text printed by --dry-run, so what a reader checks is
// what the kernel gets. The rules live in one inet table (IPv4 and IPv6) with
// one NAT chain on the output hook: only connections opened from inside the
// pod are redirected, inbound traffic never passes through it.
//
// Only ParsePorts, ParsePort and ParseCIDRs are available off Linux: the
// injector validates annotations with them wherever it is built.
package capture
