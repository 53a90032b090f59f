// Command grpctarget is the program the overhead benchmark's gRPC variants
// (test/bench) observe, built twice so that the agent's include list names
// one side only: with -listen it is a grpc-go server answering a unary
// method (grpcserver variant; it prints "listening ADDR"), with -addr a
// grpc-go client calling that method in a closed loop of -conns
// goroutines when and for as long as the benchmark says on stdin
// (grpcclient variant, and the load of the grpcserver one).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/blindspot-dev/blindspot/test/bench/internal/opdriver"
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
		opdriver.Serve(op, *conns, *lifetime)
	default:
		log.Fatal("give -listen or -addr")
	}
}
