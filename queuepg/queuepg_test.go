package queuepg_test

import (
	"testing"
	"time"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/storetest"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/pickup"
	"github.com/openmediator/mediator/queuepg"
	"github.com/openmediator/mediator/storepg"
)

// Checked here rather than in the package so that queuepg does not depend on
// the mediator core.
var (
	_ mediator.Queue  = (*queuepg.Queue)(nil)
	_ pickup.Queue    = (*queuepg.Queue)(nil)
	_ pickup.Registry = (*queuepg.Queue)(nil)
)

func TestQueue(t *testing.T) {
	storetest.RunQueue(t, func(t *testing.T, lease time.Duration) storetest.QueueFixture {
		pool := pgtest.NewPool(t)
		return storetest.QueueFixture{
			Store:   storepg.New(pool),
			Queue:   queuepg.New(pool, queuepg.Options{Lease: lease}),
			Advance: time.Sleep, // leases run on the database's clock
		}
	})
}
