package pickup

import (
	"context"
	"slices"

	"github.com/openmediator/mediator/queue"
)

// firstClaim is the most messages the first claim of a batch asks for:
// enough for a usual batch (Credo's delivery-request limit, LiveBatch) in
// one round trip, few enough that a backlog of large messages is not read
// into memory only to be released again.
const firstClaim = 10

// maxClaimRounds bounds the claims (database round trips) of one batch.
const maxClaimRounds = 4

// claimBatch claims up to limit messages matching f for h, oldest first,
// keeping the batch's payload bytes within Options.MaxBatchBytes; the first
// message is always taken, so one that is larger than the cap still goes out
// alone. It claims in rounds, the first of at most firstClaim messages and
// the next sized by the bytes left at the average size seen so far, and at
// once releases what it claimed beyond the cap, so it is claimable again.
// more reports that further messages may be claimable now (the limit or
// the cap was reached). An error means nothing is claimed.
func (s *Service) claimBatch(ctx context.Context, f queue.Filter, limit int, h queue.Holder) (msgs []queue.Message, more bool, err error) {
	rounds := 0
	defer func() {
		if rounds > 1 {
			// A later round may meet messages that became claimable again
			// (released, lease over) and are older than an earlier round's.
			// Each round is in the queue's order; keep its tie-break.
			slices.SortStableFunc(msgs, func(a, b queue.Message) int {
				return a.ReceivedAt.Compare(b.ReceivedAt)
			})
		}
		s.countRedelivered(msgs)
	}()
	maxBytes := s.opts.MaxBatchBytes
	var total int64
	want := min(limit, firstClaim)
	for want > 0 {
		if rounds == maxClaimRounds {
			return msgs, true, nil
		}
		rounds++
		got, err := s.queue.Claim(ctx, f, want, h)
		if err != nil {
			s.release(ctx, h, f.ConnectionID, got)
			if len(msgs) == 0 {
				return nil, false, err
			}
			// Deliver what the earlier rounds claimed.
			s.opts.Logger.WarnContext(ctx, "claim failed; sending a smaller batch", "connection", f.ConnectionID, "err", err)
			return msgs, true, nil
		}
		for i, m := range got {
			size := int64(len(m.Payload))
			if len(msgs) > 0 && total+size > maxBytes {
				s.release(ctx, h, f.ConnectionID, got[i:])
				return msgs, true, nil
			}
			msgs = append(msgs, m)
			total += size
		}
		if len(got) < want {
			return msgs, false, nil // nothing more was claimable
		}
		left := limit - len(msgs)
		if left <= 0 || total >= maxBytes {
			return msgs, true, nil
		}
		avg := max(1, total/int64(len(msgs)))
		want = int(min(int64(left), max(1, (maxBytes-total)/avg)))
	}
	return msgs, false, nil
}
