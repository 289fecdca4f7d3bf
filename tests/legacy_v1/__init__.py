"""A frozen copy of protocol 1 (hotreload.protocol and hotreload._dotted as last released), for
the migration tests: it writes protocol-1 snapshots and shows how a protocol-1 subscriber reads
protocol-2 data. Not maintained; do not import it from the package."""
