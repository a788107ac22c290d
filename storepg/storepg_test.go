package storepg_test

import (
	"testing"

	"github.com/openmediator/mediator/internal/pgtest"
	"github.com/openmediator/mediator/internal/storetest"
	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/storepg"
)

// Checked here rather than in the package so that storepg does not depend on
// the mediator core.
var _ mediator.Store = (*storepg.Store)(nil)

func TestStore(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) mediator.Store {
		return storepg.New(pgtest.NewPool(t))
	})
}
