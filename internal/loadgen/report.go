package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteTable prints r for people.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "mediator-load: %s mode, %d wallets, %d senders, %d messages (%d B plaintext, %d B stored, %d B posted), %s",
		r.Mode, r.Wallets, r.Senders, r.Messages, r.PayloadBytes, r.InnerBytes, r.ForwardBytes, r.Distribution)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", target rate %g/s", r.Rate)
	}
	if r.Prepacked {
		b.WriteString(", prepacked")
	}
	fmt.Fprintf(&b, "\ntargets: %s\n\n", strings.Join(r.Targets, " "))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tcount\trate/s\tmean ms\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	row := func(name string, count int64, rate float64, p Percentiles) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, count, rate, p.Mean, p.P50, p.P90, p.P99, p.Max)
	}
	row("forwards accepted (POST round trip)", r.Accepted, r.ForwardsPerSec, r.AcceptLatencyMs)
	row("delivered (accepted → decrypted)", r.Delivered, r.DeliveredPerSec, r.LatencyMs)
	row("delivered (sent → decrypted)", r.Delivered, r.DeliveredPerSec, r.SentLatencyMs)
	if r.CrossLatencyMs != nil {
		row("  via the wallet's own target", int64(r.SameLatencyMs.Count), 0, *r.SameLatencyMs)
		row("  via another target (cross)", int64(r.CrossLatencyMs.Count), 0, *r.CrossLatencyMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nerrors %d   lost %d   duplicates %d   failed forwards %d   unsent %d   delivered-not-accepted %d   delivered before the POST returned %d",
		r.Errors, r.Lost, r.Duplicates, r.Failed, r.Unsent, r.DeliveredNotAccepted, r.EarlyDeliveries)
	if r.TimedOut {
		b.WriteString("   TIMED OUT")
	}
	b.WriteString("\n")
	if len(r.ErrorKinds) > 0 {
		kinds := make([]string, 0, len(r.ErrorKinds))
		for k := range r.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(&b, "  %-18s %6d  e.g. %s\n", k, r.ErrorKinds[k], r.ErrorSamples[k])
		}
	}
	d := r.Durations
	fmt.Fprintf(&b, "setup %.0f ms   pack %.0f ms   send %.0f ms   drain %.0f ms   settle %.0f ms   total %.0f ms   client CPU %.2f s\n",
		d.Setup, d.Pack, d.Send, d.Drain, d.Settle, d.Total, r.ClientCPUSeconds)
	if r.OK() {
		b.WriteString("OK\n")
	} else {
		b.WriteString("FAILED\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
