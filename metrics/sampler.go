package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/openmediator/mediator/queue"
)

// DefaultSampleEvery is how often RunQueueSampler samples by default.
const DefaultSampleEvery = 15 * time.Second

// SamplerOptions configure RunQueueSampler.
type SamplerOptions struct {
	// Every is the sampling interval (default DefaultSampleEvery).
	Every time.Duration
	// Depth reads the whole queue's depth (queuepg.Queue.Depth,
	// memstore.Memory.Depth). Required.
	Depth func(ctx context.Context) (queue.Depth, error)
	// Probe, when set, sends this instance a probe notification
	// (queuepg.Queue.SendNotifyProbe); its arrival is reported through
	// NotificationLag.
	Probe func(ctx context.Context) error
	// Timeout bounds one sample and one probe (default 5s).
	Timeout time.Duration
	// Logger receives sampling failures (default slog.Default()).
	Logger *slog.Logger
}

// RunQueueSampler sets mediator_queue_messages,
// mediator_queue_in_flight_messages and
// mediator_queue_oldest_message_age_seconds from Depth at once and then
// every Every, and sends a probe notification at every tick, until ctx
// ends.
// A failed sample counts in mediator_queue_sample_errors_total and leaves
// the gauges as they were.
func (m *Metrics) RunQueueSampler(ctx context.Context, o SamplerOptions) {
	if o.Every <= 0 {
		o.Every = DefaultSampleEvery
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	// The first probe waits for the first tick: at start the listener is
	// usually not listening yet, and the probe would count as lost.
	probe := o.Probe
	o.Probe = nil
	for {
		m.sampleQueue(ctx, o)
		o.Probe = probe
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Metrics) sampleQueue(ctx context.Context, o SamplerOptions) {
	if o.Depth != nil {
		sctx, cancel := context.WithTimeout(ctx, o.Timeout)
		d, err := o.Depth(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.queueSampleErr.Inc()
			o.Logger.Warn("metrics: queue sample failed", "err", err)
		} else {
			m.queueDepth.Set(float64(d.Messages))
			m.queueInFlight.Set(float64(d.InFlight))
			m.queueOldest.Set(seconds(d.OldestAge))
		}
	}
	if o.Probe != nil {
		pctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := o.Probe(pctx)
		cancel()
		switch {
		case err == nil:
			m.probesSent.Inc()
		case ctx.Err() == nil:
			o.Logger.Warn("metrics: notification probe not sent", "err", err)
		}
	}
}
