package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ckp-go/ckp/internal/base"
	"github.com/ckp-go/ckp/store"
)

// Talking to the store: retries with backoff, whole small objects, manifests, and
// bounded parallelism.

// errAbandoned ends the upload of a version that a rewind made obsolete.
var errAbandoned = errors.New("ckp: upload abandoned")

// retry runs op until it succeeds, fails permanently (store.IsPermanent, or damage of
// the local copy: ErrCorrupt) or ctx ends, waiting longer after each transient failure
// (50 ms doubling to 5 s, with jitter). Under a retry budget (withRetryBudget) it also
// gives up once its failures in a row have taken longer than the budget: a store that
// keeps answering short reads, say, is not retried forever.
// Each attempt gets its own deadline, long enough for size bytes at 10 MB/s plus a
// minute, so a connection that hangs is given up and tried again.
func retry(ctx context.Context, size int64, op func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	if b, ok := ctx.Value(backoffKey{}).(time.Duration); ok {
		wait = b
	}
	maxWait := 100 * wait
	per := time.Minute + time.Duration(size/10_000_000)*time.Second
	budget, _ := ctx.Value(retryBudgetKey{}).(time.Duration)
	var first time.Time
	for {
		actx, cancel := context.WithTimeout(ctx, per)
		err := op(actx)
		cancel()
		if err == nil || store.IsPermanent(err) || errors.Is(err, base.ErrCorrupt) || errors.Is(err, errAbandoned) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		}
		if first.IsZero() {
			first = time.Now()
		} else if budget > 0 && time.Since(first) > budget {
			return fmt.Errorf("%w (gave up after failing for %v)", err, budget)
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

type retryBudgetKey struct{}

type backoffKey struct{}

// withBackoff sets the first wait of every retry under ctx.
func withBackoff(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, backoffKey{}, d)
}

// withRetryBudget bounds the time every retry under ctx spends failing in a row.
func withRetryBudget(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, retryBudgetKey{}, d)
}

// toolBudget bounds the failures in a row of each request of the tools that read a
// store (InspectJob, StoreVersions, ReadStoreVersion, VerifyStore, Pull) when their
// context has no deadline. (A variable for the tests.)
var toolBudget = DefaultTimeout

// toolContext is the context a tool works under: ctx, bounded by toolBudget when it
// has no deadline of its own.
func toolContext(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok {
		return ctx
	}
	return withRetryBudget(ctx, toolBudget)
}

// getAll reads a whole object, retrying transient errors.
func getAll(ctx context.Context, st store.Store, key string) ([]byte, error) {
	var out []byte
	err := retry(ctx, 0, func(ctx context.Context) error {
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
		if err != nil {
			return err
		}
		if len(b) > maxManifest {
			return fmt.Errorf("%w: %s: object %q is larger than %d bytes", store.ErrInvalid, st, key, maxManifest)
		}
		out = b
		return nil
	})
	return out, err
}

// readManifest fetches and decodes the manifest under key.
func readManifest(ctx context.Context, st store.Store, key string) (*manifest, error) {
	b, err := getAll(ctx, st, key)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s: %s)", err, st, key)
	}
	return m, nil
}

// remoteErr wraps a store error in base.ErrRemote with what was being done.
func remoteErr(st store.Store, err error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s: %w", base.ErrRemote, st, fmt.Sprintf(format, args...), err)
}

// parallel runs fn(0..n-1) on up to k goroutines; the first error cancels the rest
// and is returned. When ctx ends before every call ran, it returns ctx's cause: calls
// left out are not a success.
func parallel(ctx context.Context, n, k int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		next    int
		wg      sync.WaitGroup
		once    sync.Once
		ferr    error
		skipped atomic.Bool // a call was left out because ctx ended
	)
	for range min(n, k) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if ctx.Err() != nil {
					skipped.Store(true)
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { ferr = err; cancel(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if ferr == nil && skipped.Load() {
		// The caller's ctx ended before every call ran: not a success.
		return context.Cause(ctx)
	}
	return ferr
}
