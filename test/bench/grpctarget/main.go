// Command grpctarget is the program the overhead benchmark's gRPC variants
// (test/bench) observe, built twice so that the agent's include list names
// one side only: with -listen it is a grpc-go server answering a unary
// method (grpcserver variant; it prints "listening ADDR"), with -addr a
// grpc-go client calling that method in a closed loop of -conns
// goroutines when and for as long as the benchmark says on stdin
// (grpcclient variant, and the load of the grpcserver one). It is its own
// module so that the blindspot module does not depend on grpc-go.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const method = "/blindspot.bench.Echo/Unary"

type echo interface{}

func unary(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return in, nil
}

func main() {
	listen := flag.String("listen", "", "serve on this address")
	addr := flag.String("addr", "", "call the server at this address")
	conns := flag.Int("conns", 1, "concurrent calls (client)")
	lifetime := flag.Duration("lifetime", 15*time.Minute, "exit after this long whatever happens")
	flag.Parse()
	switch {
	case *listen != "":
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		s := grpc.NewServer()
		s.RegisterService(&grpc.ServiceDesc{
			ServiceName: "blindspot.bench.Echo",
			HandlerType: (*echo)(nil),
			Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unary}},
		}, struct{}{})
		time.AfterFunc(*lifetime, func() { os.Exit(2) })
		fmt.Println("listening", ln.Addr())
		log.Fatal(s.Serve(ln))
	case *addr != "":
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		in := wrapperspb.String("ping")
		op := func() error {
			return cc.Invoke(context.Background(), method, in, new(wrapperspb.StringValue))
		}
		if err := op(); err != nil {
			log.Fatal(err)
		}
		serve(op, *conns, *lifetime)
	default:
		log.Fatal("give -listen or -addr")
	}
}

// serve drives op under the benchmark's commands, one per line on stdin:
//
//	run MAX SECONDS   start conns workers calling op in a closed loop, at
//	                  most MAX calls in all, for at most SECONDS
//	count             print "DONE ERRORS RUNNING" (RUNNING: 1 or 0)
//	stop              end the workers, wait for them, then print as count
//
// It exits when stdin closes, and in any case after lifetime.
func serve(op func() error, conns int, lifetime time.Duration) {
	time.AfterFunc(lifetime, func() {
		fmt.Fprintf(os.Stderr, "lifetime of %v over\n", lifetime)
		os.Exit(2)
	})
	var (
		done, errs, issued atomic.Int64
		running            atomic.Int32
		stop               atomic.Bool
		wg                 sync.WaitGroup
		firstErr           sync.Once
	)
	status := func() {
		fmt.Printf("%d %d %d\n", done.Load(), errs.Load(), running.Load())
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "run":
			stop.Store(true)
			wg.Wait()
			max, _ := strconv.ParseInt(f[1], 10, 64)
			secs, _ := strconv.ParseFloat(f[2], 64)
			deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
			done.Store(0)
			errs.Store(0)
			issued.Store(0)
			stop.Store(false)
			for i := 0; i < conns; i++ {
				wg.Add(1)
				running.Add(1)
				go func() {
					defer wg.Done()
					defer running.Add(-1)
					for !stop.Load() && time.Now().Before(deadline) && issued.Add(1) <= max {
						if err := op(); err != nil {
							errs.Add(1)
							firstErr.Do(func() { fmt.Fprintf(os.Stderr, "first error: %v\n", err) })
							time.Sleep(10 * time.Millisecond)
							continue
						}
						done.Add(1)
					}
				}()
			}
			fmt.Println("started")
		case "count":
			status()
		case "stop":
			stop.Store(true)
			wg.Wait()
			status()
		}
	}
	stop.Store(true)
	wg.Wait()
}
