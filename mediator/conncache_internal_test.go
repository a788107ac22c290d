package mediator

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmediator/mediator/record"
)

func cachedConn(i int) record.Connection {
	return record.Connection{ID: fmt.Sprint("id-", i), OurKey: fmt.Sprint("our-", i), TheirKey: fmt.Sprint("their-", i),
		State: record.StateCompleted, Mediation: record.MediationGranted}
}

// The cache never holds more than its size, keeps what is in use, and
// never hands out a mediation state.
func TestConnCacheBounded(t *testing.T) {
	c := newConnCache(100)
	for i := range 1000 {
		c.put(cachedConn(i))
		if _, ok := c.get("our-0", "their-0"); !ok { // in use all along
			t.Fatalf("after %d puts, the connection in use was evicted", i+1)
		}
		if n := c.len(); n > 100 {
			t.Fatalf("after %d puts the cache holds %d, want at most 100", i+1, n)
		}
	}
	got, ok := c.get("our-999", "their-999")
	if !ok || got.ID != "id-999" || got.Mediation != "" || got.State != record.StateCompleted {
		t.Errorf("get = %+v, %v; want id-999 without mediation state", got, ok)
	}
	if _, ok := c.get("our-1", "their-1"); ok {
		t.Error("an old connection is still cached")
	}
	if _, ok := c.get("our-999", "their-0"); ok {
		t.Error("keys of two connections matched")
	}
	if newConnCache(-1) != nil {
		t.Error("negative size should turn the cache off")
	}
	var off *connCache
	off.put(cachedConn(1))
	if _, ok := off.get("our-1", "their-1"); ok || off.len() != 0 {
		t.Error("a nil cache cached something")
	}
}

func TestConnCacheTTLAndState(t *testing.T) {
	now := time.Now()
	c := newConnCache(10)
	c.now = func() time.Time { return now }
	conn := cachedConn(1)
	conn.State = record.StateResponseSent
	c.put(conn)
	c.setState(conn, record.StateCompleted)
	if got, ok := c.get(conn.OurKey, conn.TheirKey); !ok || got.State != record.StateCompleted {
		t.Errorf("after setState: %+v, %v", got, ok)
	}
	now = now.Add(connCacheTTL)
	if _, ok := c.get(conn.OurKey, conn.TheirKey); ok {
		t.Error("an entry older than the TTL was used")
	}
}
