package queuepg

import (
	"context"
	"testing"
	"time"

	"github.com/openmediator/mediator/queue"
)

func TestDiag(t *testing.T) {
	for _, n := range []int{0, 200000, 0, 200000} {
		s := newBenchSetup(t)
		backlog(t, s.pool, n)
		fill(t, s.pool, s.conn, s.key, 20000)
		ctx := context.Background()
		f := queue.Filter{ConnectionID: s.conn}
		var tc, ta time.Duration
		for i := range 2000 {
			t0 := time.Now()
			msgs, _ := s.q.Claim(ctx, f, 10, queue.Holder{})
			t1 := time.Now()
			ids := []string{}
			for _, m := range msgs { ids = append(ids, m.ID) }
			s.q.Ack(ctx, s.conn, ids)
			t2 := time.Now()
			tc += t1.Sub(t0); ta += t2.Sub(t1)
			if i%1000 == 999 {
				t.Logf("backlog %d: after %d: claim avg %v ack avg %v", n, i+1, tc/1000, ta/1000)
				tc, ta = 0, 0
			}
		}
	}
}
