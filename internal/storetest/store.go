package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmediator/mediator/mediator"
	"github.com/openmediator/mediator/record"
)

// RunStore runs the mediator.Store conformance tests.
func RunStore(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, mediator.Store)
	}{
		{"Keys", testKeys},
		{"Connections", testConnections},
		{"ConnectionDefaults", testConnectionDefaults},
		{"ConnectionByTheirKeyNewest", testConnectionByTheirKey},
		{"ConnectionUpdates", testConnectionUpdates},
		{"Routes", testRoutes},
		{"ConnectionByRoute", testConnectionByRoute},
		{"RoutePagination", testRoutePagination},
		{"ConcurrentAddRoute", testConcurrentAddRoute},
		{"DeviceInfo", testDeviceInfo},
		{"KeyCreationLock", testKeyCreationLock},
		{"KeyCreationLockReleased", testKeyCreationLockReleased},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// base is a fixed time at the microsecond precision both stores keep.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

func isNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, record.ErrNotFound) {
		t.Errorf("%s: error = %v, want record.ErrNotFound", what, err)
	}
}

func testKeys(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	keys := []record.Key{
		{Verkey: newKey(t), Purpose: record.PurposeRouting, SealedPrivate: []byte{0, 1, 2, 255}, CreatedAt: base},
		{Verkey: newKey(t), Purpose: record.PurposeConnection, SealedPrivate: []byte("sealed-1"), CreatedAt: base.Add(time.Second)},
		{Verkey: newKey(t), Purpose: record.PurposeConnection, SealedPrivate: []byte("sealed-0"), CreatedAt: base.Add(-time.Second)},
		{Verkey: newKey(t), Purpose: record.PurposeConnection, SealedPrivate: []byte("sealed-2"), CreatedAt: base.Add(time.Hour)},
	}
	for _, k := range keys {
		in := k
		in.SealedPrivate = slices.Clone(k.SealedPrivate)
		if err := s.InsertKey(ctx, in); err != nil {
			t.Fatalf("InsertKey: %v", err)
		}
		clear(in.SealedPrivate) // the store must have kept its own copy
	}
	// One without a time gets the store's now.
	fresh := record.Key{Verkey: newKey(t), Purpose: record.PurposeInvitation, SealedPrivate: []byte("x")}
	if err := s.InsertKey(ctx, fresh); err != nil {
		t.Fatalf("InsertKey: %v", err)
	}

	for _, want := range keys {
		got, err := s.KeyByVerkey(ctx, want.Verkey)
		if err != nil {
			t.Fatalf("KeyByVerkey: %v", err)
		}
		if !keyEqual(got, want) {
			t.Errorf("KeyByVerkey = %+v, want %+v", got, want)
		}
	}
	got, err := s.KeyByVerkey(ctx, fresh.Verkey)
	if err != nil || time.Since(got.CreatedAt).Abs() > time.Minute {
		t.Errorf("key inserted without a time: %+v, %v; want CreatedAt about now", got, err)
	}

	_, err = s.KeyByVerkey(ctx, newKey(t))
	isNotFound(t, "KeyByVerkey(unknown)", err)
	if err := s.InsertKey(ctx, keys[0]); err == nil {
		t.Error("inserting a verkey twice succeeded")
	}

	for _, tc := range []struct {
		purpose record.KeyPurpose
		want    []record.Key
	}{
		{record.PurposeConnection, []record.Key{keys[2], keys[1], keys[3]}}, // oldest first
		{record.PurposeRouting, keys[:1]},
		{record.PurposeInvitation, []record.Key{fresh}},
		{"unknown", nil},
	} {
		got, err := s.KeysByPurpose(ctx, tc.purpose)
		if err != nil {
			t.Fatalf("KeysByPurpose(%s): %v", tc.purpose, err)
		}
		var g, w []string
		for _, k := range got {
			g = append(g, k.Verkey)
			if k.Purpose != tc.purpose {
				t.Errorf("KeysByPurpose(%s) returned a %s key", tc.purpose, k.Purpose)
			}
		}
		for _, k := range tc.want {
			w = append(w, k.Verkey)
		}
		if !slices.Equal(g, w) {
			t.Errorf("KeysByPurpose(%s) = %v, want %v", tc.purpose, g, w)
		}
	}
}

func keyEqual(a, b record.Key) bool {
	return a.Verkey == b.Verkey && a.Purpose == b.Purpose &&
		string(a.SealedPrivate) == string(b.SealedPrivate) && a.CreatedAt.Equal(b.CreatedAt)
}

// fullConnection returns a connection with every field set.
func fullConnection(t *testing.T, created time.Time) record.Connection {
	id := newID()
	return record.Connection{
		ID:            id,
		State:         record.StateResponseSent,
		Protocol:      "https://didcomm.org/didexchange/1.1",
		OurDID:        "did:peer:2.Ez" + id[:8],
		OurKey:        newKey(t),
		TheirDID:      "did:peer:4z" + id[9:13],
		TheirKey:      newKey(t),
		TheirLabel:    "Wallet ✓",
		TheirEndpoint: "didcomm:transport/queue",
		InvitationID:  newID(),
		ThreadID:      newID(),
		Mediation:     record.MediationGranted,
		CreatedAt:     created,
		UpdatedAt:     created.Add(time.Minute),
	}
}

func connEqual(a, b record.Connection) bool {
	ta, tb := a, b
	ta.CreatedAt, ta.UpdatedAt, tb.CreatedAt, tb.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return ta == tb && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func insertConnection(t *testing.T, s mediator.Store, c record.Connection) {
	t.Helper()
	if err := s.InsertConnection(t.Context(), c); err != nil {
		t.Fatalf("InsertConnection: %v", err)
	}
}

func testConnections(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	c := fullConnection(t, base)
	other := fullConnection(t, base)
	insertConnection(t, s, c)
	insertConnection(t, s, other)

	lookups := []struct {
		name string
		get  func() (record.Connection, error)
		want *record.Connection // nil: not found
	}{
		{"by id", func() (record.Connection, error) { return s.ConnectionByID(ctx, c.ID) }, &c},
		{"by upper-case id", func() (record.Connection, error) { return s.ConnectionByID(ctx, strings.ToUpper(c.ID)) }, &c},
		{"by keys", func() (record.Connection, error) { return s.ConnectionByKeys(ctx, c.OurKey, c.TheirKey) }, &c},
		{"by their key", func() (record.Connection, error) { return s.ConnectionByTheirKey(ctx, c.TheirKey) }, &c},
		{"other by keys", func() (record.Connection, error) { return s.ConnectionByKeys(ctx, other.OurKey, other.TheirKey) }, &other},
		{"unknown id", func() (record.Connection, error) { return s.ConnectionByID(ctx, newID()) }, nil},
		{"id not a UUID", func() (record.Connection, error) { return s.ConnectionByID(ctx, "conn-1") }, nil},
		{"keys swapped", func() (record.Connection, error) { return s.ConnectionByKeys(ctx, c.TheirKey, c.OurKey) }, nil},
		{"keys of two connections", func() (record.Connection, error) { return s.ConnectionByKeys(ctx, c.OurKey, other.TheirKey) }, nil},
		{"their key is our key", func() (record.Connection, error) { return s.ConnectionByTheirKey(ctx, c.OurKey) }, nil},
	}
	for _, tc := range lookups {
		got, err := tc.get()
		if tc.want == nil {
			isNotFound(t, tc.name, err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !connEqual(got, *tc.want) {
			t.Errorf("%s = %+v\nwant %+v", tc.name, got, *tc.want)
		}
	}

	dupID := fullConnection(t, base)
	dupID.ID = c.ID
	dupKeys := fullConnection(t, base)
	dupKeys.OurKey, dupKeys.TheirKey = c.OurKey, c.TheirKey
	badID := fullConnection(t, base)
	badID.ID = "not-a-uuid"
	for name, bad := range map[string]record.Connection{"same id": dupID, "same keys": dupKeys, "id not a UUID": badID} {
		if err := s.InsertConnection(ctx, bad); err == nil {
			t.Errorf("InsertConnection with %s succeeded", name)
		}
	}
}

func testConnectionDefaults(t *testing.T, s mediator.Store) {
	// Only the required fields: the rest comes back empty, mediation
	// "none", times set by the store.
	c := record.Connection{ID: newID(), OurKey: newKey(t), TheirKey: newKey(t)}
	insertConnection(t, s, c)
	got, err := s.ConnectionByID(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Mediation != record.MediationNone {
		t.Errorf("Mediation = %q, want %q", got.Mediation, record.MediationNone)
	}
	if time.Since(got.CreatedAt).Abs() > time.Minute || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("CreatedAt %v, UpdatedAt %v; want about now and equal", got.CreatedAt, got.UpdatedAt)
	}
	want := c
	want.Mediation, want.CreatedAt, want.UpdatedAt = record.MediationNone, got.CreatedAt, got.UpdatedAt
	if !connEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func testConnectionByTheirKey(t *testing.T, s mediator.Store) {
	theirKey := newKey(t)
	var conns []record.Connection
	for _, offset := range []time.Duration{0, time.Hour, -time.Hour} {
		c := fullConnection(t, base.Add(offset))
		c.TheirKey = theirKey
		insertConnection(t, s, c)
		conns = append(conns, c)
	}
	got, err := s.ConnectionByTheirKey(t.Context(), theirKey)
	if err != nil || got.ID != conns[1].ID {
		t.Errorf("ConnectionByTheirKey = %s, %v; want the newest, %s", got.ID, err, conns[1].ID)
	}
}

func testConnectionUpdates(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	c := fullConnection(t, base)
	insertConnection(t, s, c)
	other := fullConnection(t, base)
	insertConnection(t, s, other)

	if err := s.SetConnectionState(ctx, strings.ToUpper(c.ID), record.StateCompleted); err != nil {
		t.Fatalf("SetConnectionState: %v", err)
	}
	if err := s.SetMediationState(ctx, c.ID, record.MediationDenied); err != nil {
		t.Fatalf("SetMediationState: %v", err)
	}
	got, err := s.ConnectionByID(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != record.StateCompleted || got.Mediation != record.MediationDenied {
		t.Errorf("after updates: state %q, mediation %q", got.State, got.Mediation)
	}
	if !got.UpdatedAt.After(c.UpdatedAt) || !got.CreatedAt.Equal(c.CreatedAt) {
		t.Errorf("after updates: CreatedAt %v (was %v), UpdatedAt %v (was %v); want CreatedAt kept, UpdatedAt later",
			got.CreatedAt, c.CreatedAt, got.UpdatedAt, c.UpdatedAt)
	}
	want := c
	want.State, want.Mediation, want.UpdatedAt = record.StateCompleted, record.MediationDenied, got.UpdatedAt
	if !connEqual(got, want) {
		t.Errorf("other fields changed:\ngot  %+v\nwant %+v", got, want)
	}
	if o, err := s.ConnectionByID(ctx, other.ID); err != nil || !connEqual(o, other) {
		t.Errorf("another connection changed: %+v, %v", o, err)
	}

	for _, id := range []string{newID(), "not-a-uuid"} {
		isNotFound(t, "SetConnectionState("+id+")", s.SetConnectionState(ctx, id, record.StateCompleted))
		isNotFound(t, "SetMediationState("+id+")", s.SetMediationState(ctx, id, record.MediationGranted))
	}
}

func testRoutes(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	a, b := fullConnection(t, base), fullConnection(t, base)
	insertConnection(t, s, a)
	insertConnection(t, s, b)
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)

	steps := []struct {
		name      string
		do        func() (any, error)
		want      any
		wantError error
	}{
		{"add k1 to A", func() (any, error) { return s.AddRoute(ctx, a.ID, k1) }, record.RouteAdded, nil},
		{"add k1 to A again", func() (any, error) { return s.AddRoute(ctx, a.ID, k1) }, record.RouteNoChange, nil},
		{"add k1 to A, upper-case id", func() (any, error) { return s.AddRoute(ctx, strings.ToUpper(a.ID), k1) }, record.RouteNoChange, nil},
		{"add k1 to B", func() (any, error) { return s.AddRoute(ctx, b.ID, k1) }, record.RouteConflict, nil},
		{"add k2 to A", func() (any, error) { return s.AddRoute(ctx, a.ID, k2) }, record.RouteAdded, nil},
		{"add to unknown connection", func() (any, error) { return s.AddRoute(ctx, newID(), newKey(t)) }, nil, record.ErrNotFound},
		{"add to connection id not a UUID", func() (any, error) { return s.AddRoute(ctx, "nope", newKey(t)) }, nil, record.ErrNotFound},
		{"remove k1 as B", func() (any, error) { return s.RemoveRoute(ctx, b.ID, k1) }, false, nil},
		{"remove unknown key", func() (any, error) { return s.RemoveRoute(ctx, a.ID, newKey(t)) }, false, nil},
		{"remove as connection id not a UUID", func() (any, error) { return s.RemoveRoute(ctx, "nope", k1) }, false, nil},
		{"remove k1 as A", func() (any, error) { return s.RemoveRoute(ctx, a.ID, k1) }, true, nil},
		{"remove k1 as A again", func() (any, error) { return s.RemoveRoute(ctx, a.ID, k1) }, false, nil},
		{"add k1 to B once free", func() (any, error) { return s.AddRoute(ctx, b.ID, k1) }, record.RouteAdded, nil},
		{"deny B's mediation", func() (any, error) { return nil, s.SetMediationState(ctx, b.ID, record.MediationDenied) }, nil, nil},
		{"add k3 to B, denied", func() (any, error) { return s.AddRoute(ctx, b.ID, k3) }, record.RouteNotGranted, nil},
		{"add k1 to B, denied, key of B", func() (any, error) { return s.AddRoute(ctx, b.ID, k1) }, record.RouteNotGranted, nil},
		{"add k3 to A, not taken by B", func() (any, error) { return s.AddRoute(ctx, a.ID, k3) }, record.RouteAdded, nil},
		{"mediation of B: none", func() (any, error) { return nil, s.SetMediationState(ctx, b.ID, record.MediationNone) }, nil, nil},
		{"add k4 to B, never granted", func() (any, error) { return s.AddRoute(ctx, b.ID, newKey(t)) }, record.RouteNotGranted, nil},
	}
	for _, st := range steps {
		got, err := st.do()
		if st.wantError != nil {
			if !errors.Is(err, st.wantError) {
				t.Errorf("%s: error = %v, want %v", st.name, err, st.wantError)
			}
			continue
		}
		if err != nil || got != st.want {
			t.Errorf("%s = %v, %v; want %v", st.name, got, err, st.want)
		}
	}

	for _, tc := range []struct {
		conn  string
		want  []string
		total int
	}{
		{a.ID, []string{k2, k3}, 2},
		{b.ID, []string{k1}, 1},
		{newID(), nil, 0},
		{"nope", nil, 0},
	} {
		keys, total, err := s.Routes(ctx, tc.conn, 0, 0)
		if err != nil || !slices.Equal(keys, tc.want) || total != tc.total {
			t.Errorf("Routes(%s) = %v, %d, %v; want %v, %d", tc.conn, keys, total, err, tc.want, tc.total)
		}
	}
}

func testRoutePagination(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	c, other := fullConnection(t, base), fullConnection(t, base)
	insertConnection(t, s, c)
	insertConnection(t, s, other)
	var keys []string
	for range 7 {
		k := newKey(t)
		keys = append(keys, k)
		if res, err := s.AddRoute(ctx, c.ID, k); err != nil || res != record.RouteAdded {
			t.Fatalf("AddRoute = %q, %v", res, err)
		}
		// Interleave another connection's keys: they must not show up.
		if _, err := s.AddRoute(ctx, other.ID, newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		limit, offset int
		want          []string
	}{
		{0, 0, keys},
		{-1, 0, keys},
		{3, 0, keys[:3]},
		{3, 3, keys[3:6]},
		{3, 6, keys[6:]},
		{3, 7, nil},
		{3, 100, nil},
		{0, 5, keys[5:]},
		{100, -4, keys},
	} {
		got, total, err := s.Routes(ctx, c.ID, tc.limit, tc.offset)
		if err != nil || total != len(keys) || !slices.Equal(got, tc.want) {
			t.Errorf("Routes(limit %d, offset %d) = %v, %d, %v; want %v, %d",
				tc.limit, tc.offset, got, total, err, tc.want, len(keys))
		}
	}
}

func testConcurrentAddRoute(t *testing.T, s mediator.Store) {
	const n = 8
	ctx := t.Context()
	conns := make([]string, n)
	for i := range conns {
		c := fullConnection(t, base)
		insertConnection(t, s, c)
		conns[i] = c.ID
	}
	race := func(name string, connOf func(i int) string, want map[record.RouteResult]int) {
		key := newKey(t)
		results := make([]record.RouteResult, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := s.AddRoute(ctx, connOf(i), key)
				if err != nil {
					t.Errorf("%s: AddRoute: %v", name, err)
				}
				results[i] = res
			})
		}
		wg.Wait()
		got := map[record.RouteResult]int{}
		for _, r := range results {
			got[r]++
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: results %v, want %v", name, got, want)
		}
	}
	race("different connections", func(i int) string { return conns[i] },
		map[record.RouteResult]int{record.RouteAdded: 1, record.RouteConflict: n - 1})
	race("same connection", func(int) string { return conns[0] },
		map[record.RouteResult]int{record.RouteAdded: 1, record.RouteNoChange: n - 1})
}

func testDeviceInfo(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	a, b := fullConnection(t, base), fullConnection(t, base)
	insertConnection(t, s, a)
	insertConnection(t, s, b)
	ptr := func(v string) *string { return &v }
	type info struct {
		token, platform string
		ok              bool
	}
	get := func(id string) info {
		t.Helper()
		token, platform, ok, err := s.DeviceInfo(ctx, id)
		if err != nil {
			t.Fatalf("DeviceInfo(%s): %v", id, err)
		}
		return info{token, platform, ok}
	}
	set := func(id string, token, platform *string) error {
		return s.SetDeviceInfo(ctx, id, token, platform)
	}

	steps := []struct {
		name string
		do   func() error
		a, b info // expected afterwards
	}{
		{"nothing stored", func() error { return nil }, info{}, info{}},
		{"set A", func() error { return set(a.ID, ptr("token-1"), ptr("android")) }, info{"token-1", "android", true}, info{}},
		{"replace A, upper-case id", func() error { return set(strings.ToUpper(a.ID), ptr("token-2"), ptr("ios")) },
			info{"token-2", "ios", true}, info{}},
		{"set B", func() error { return set(b.ID, ptr("token-b"), ptr("")) }, info{"token-2", "ios", true}, info{"token-b", "", true}},
		{"remove A", func() error { return set(a.ID, nil, nil) }, info{}, info{"token-b", "", true}},
		{"remove A again", func() error { return set(a.ID, nil, nil) }, info{}, info{"token-b", "", true}},
		{"remove for unknown connection", func() error { return set(newID(), nil, nil) }, info{}, info{"token-b", "", true}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := get(a.ID); got != st.a {
			t.Errorf("%s: A's device info = %+v, want %+v", st.name, got, st.a)
		}
		if got := get(b.ID); got != st.b {
			t.Errorf("%s: B's device info = %+v, want %+v", st.name, got, st.b)
		}
	}
	isNotFound(t, "SetDeviceInfo(unknown connection)", set(newID(), ptr("t"), ptr("p")))
	isNotFound(t, "SetDeviceInfo(id not a UUID)", set("nope", ptr("t"), ptr("p")))
	if got := get("nope"); got != (info{}) {
		t.Errorf("DeviceInfo(id not a UUID) = %+v", got)
	}
}

func testKeyCreationLock(t *testing.T, s mediator.Store) {
	const (
		workers = 4
		rounds  = 3
	)
	ctx := t.Context()
	var (
		inside, entered atomic.Int32
		overlap         atomic.Bool
		wg              sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range rounds {
				err := s.WithKeyCreationLock(ctx, func(ctx context.Context) error {
					if inside.Add(1) != 1 {
						overlap.Store(true)
					}
					defer inside.Add(-1)
					entered.Add(1)
					// Stay long enough that a broken lock would overlap.
					time.Sleep(5 * time.Millisecond)
					// The store is usable while holding the lock.
					if _, err := s.KeysByPurpose(ctx, record.PurposeRouting); err != nil {
						return err
					}
					return nil
				})
				if err != nil {
					t.Errorf("WithKeyCreationLock: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if overlap.Load() {
		t.Error("two holders were inside WithKeyCreationLock at once")
	}
	if got := entered.Load(); got != workers*rounds {
		t.Errorf("fn ran %d times, want %d", got, workers*rounds)
	}
}

func testKeyCreationLockReleased(t *testing.T, s mediator.Store) {
	ctx := t.Context()
	errFn := errors.New("fn failed")
	if err := s.WithKeyCreationLock(ctx, func(context.Context) error { return errFn }); !errors.Is(err, errFn) {
		t.Errorf("error from fn: got %v, want %v", err, errFn)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic to propagate", r)
			}
		}()
		_ = s.WithKeyCreationLock(ctx, func(context.Context) error { panic("boom") })
	}()

	// Both left the lock free.
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WithKeyCreationLock(short, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("lock after error and panic: %v", err)
	}

	// Waiting for a held lock ends with the context.
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithKeyCreationLock(ctx, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	wait, cancelWait := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelWait()
	ran := false
	err := s.WithKeyCreationLock(wait, func(context.Context) error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("second holder ran (%v) or got no error (%v) while the lock was held", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("first holder: %v", err)
	}
	if err := s.WithKeyCreationLock(short, func(context.Context) error { return nil }); err != nil {
		t.Errorf("lock after a cancelled wait: %v", err)
	}
}
