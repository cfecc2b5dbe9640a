package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	pb "google.golang.org/grpc/examples/helloworld/helloworld"

	"github.com/tandem-mesh/tandem/examples/greeter"
)

// callTimeout bounds one call; the slowest mode takes the server's delay.
const callTimeout = 10 * time.Second

// load makes calls SayHello calls on conn, concurrency at a time (each
// worker starts its next call when its last one returns), and returns each
// call's latency and how many calls each backend answered. A failed call
// counts under failedCall; firstErr is the first failure.
func load(ctx context.Context, conn grpc.ClientConnInterface, calls, concurrency int) (lat []time.Duration, counts map[string]int, firstErr error) {
	client := pb.NewGreeterClient(conn)
	lat = make([]time.Duration, calls)
	hosts := make([]string, calls)
	var next atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range min(concurrency, calls) {
		wg.Go(func() {
			req := &pb.HelloRequest{Name: "balance"}
			for {
				i := int(next.Add(1) - 1)
				if i >= calls || ctx.Err() != nil {
					return
				}
				callCtx, done := context.WithTimeout(ctx, callTimeout)
				start := time.Now()
				reply, err := client.SayHello(callCtx, req)
				lat[i] = time.Since(start)
				done()
				if err == nil {
					hosts[i], err = greeter.Backend(reply.GetMessage())
				}
				if err != nil {
					hosts[i] = failedCall
					errOnce.Do(func() { firstErr = fmt.Errorf("call %d of %d: %w", i+1, calls, err) })
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	counts = map[string]int{}
	for _, h := range hosts {
		counts[h]++
	}
	return lat, counts, firstErr
}

// failedCall counts the calls that failed, in load's counts.
const failedCall = ""

// result is one mode's calls, pooled over its runs.
type result struct {
	pods   []string        // in the order of the table: the slow pod first
	counts map[string]int  // answered calls per pod
	failed int             // failed calls, warm-ups included
	lat    []time.Duration // sorted
	runP99 []time.Duration // the p99 of each run
}

func (r *result) add(lat []time.Duration, counts map[string]int) {
	for h, n := range counts {
		if h == failedCall {
			r.failed += n
		} else {
			r.counts[h] += n
		}
	}
	run := slices.Clone(lat)
	slices.Sort(run)
	r.runP99 = append(r.runP99, percentile(run, 0.99))
	r.lat = append(r.lat, lat...)
	slices.Sort(r.lat)
}

// mean is the average latency.
func (r *result) mean() time.Duration {
	var sum time.Duration
	for _, d := range r.lat {
		sum += d
	}
	return sum / time.Duration(max(len(r.lat), 1))
}

// shares are the calls each pod answered, in the order of r.pods.
func (r *result) shares() []int {
	out := make([]int, len(r.pods))
	for i, p := range r.pods {
		out[i] = r.counts[p]
	}
	return out
}

// percentile is the nearest-rank q-quantile of sorted: the smallest value
// that at least q of the values do not exceed.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps float error (10000*0.99 = 9900.000000000002) from
	// moving the rank up by one.
	rank := int(math.Ceil(float64(len(sorted))*q-1e-9)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
