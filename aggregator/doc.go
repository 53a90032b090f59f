// Package aggregator folds probe events into metric series.
//
// It holds one Shard per ring buffer (one per CPU). A shard is written by one
// reader goroutine and read only when someone scrapes, so the event path takes
// no lock shared between CPUs, allocates nothing once a series exists, and
// formats no strings: label values are interned to small integers on first
// sight, and a decoder may memoise the series an event's label-bearing
// bytes resolve to (ObserveMemo). Shards merge in Snapshot. Series are bounded per metric, HTTP routes
// per service; what overflows is folded into one overflow series and counted.
package aggregator
