// Command grpcsvc is the gRPC end-to-end target: a grpc-go server and a
// client of it in one program. The client runs a fixed script of calls
// (unary and streaming, every outcome the family must tell apart) each time
// a line "run" arrives on stdin, then prints "done" once the server has
// finished every call of the round.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The service, defined without generated code: every method takes a
// StringValue saying what to do ("ok", "code:N", "panic", "hang",
// "sleep:MS" regardless of the client); the streaming ones answer three
// messages first.
type echo interface{}

type server struct{ handled sync.WaitGroup }

func act(ctx context.Context, what string) error {
	switch {
	case what == "ok":
		return nil
	case strings.HasPrefix(what, "code:"):
		n, _ := strconv.Atoi(what[5:])
		return status.Error(codes.Code(n), "asked for "+what)
	case what == "panic":
		panic("handler panic asked by the client")
	case what == "hang":
		// Until the client gives up. Its deadline reaches the server as a
		// timeout, so the client's RST_STREAM may come first: a call with
		// a deadline ends DeadlineExceeded once that has passed here too,
		// whichever came first; one without ends Canceled.
		<-ctx.Done()
		if dl, ok := ctx.Deadline(); ok {
			time.Sleep(time.Until(dl))
			return status.Error(codes.DeadlineExceeded, "deadline passed")
		}
		return status.Error(codes.Canceled, "canceled by the client")
	case strings.HasPrefix(what, "sleep:"):
		ms, _ := strconv.Atoi(what[6:])
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return nil
	}
	return status.Error(codes.InvalidArgument, "unknown action")
}

func (s *server) unary(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	defer s.handled.Done()
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return recovered(func() (any, error) {
		if err := act(ctx, in.Value); err != nil {
			return nil, err
		}
		return wrapperspb.String("pong"), nil
	})
}

func (s *server) serverStream(_ any, st grpc.ServerStream) error {
	defer s.handled.Done()
	in := new(wrapperspb.StringValue)
	if err := st.RecvMsg(in); err != nil {
		return err
	}
	_, err := recovered(func() (any, error) {
		for i := 0; i < 3; i++ {
			if err := st.SendMsg(wrapperspb.String("part")); err != nil {
				return nil, err
			}
		}
		return nil, act(st.Context(), in.Value)
	})
	return err
}

func (s *server) bidi(_ any, st grpc.ServerStream) error {
	defer s.handled.Done()
	for {
		in := new(wrapperspb.StringValue)
		err := st.RecvMsg(in)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if in.Value != "next" {
			_, err := recovered(func() (any, error) { return nil, act(st.Context(), in.Value) })
			return err
		}
		if err := st.SendMsg(wrapperspb.String("ack")); err != nil {
			return err
		}
	}
}

// recovered turns a handler panic into codes.Internal, as a recovery
// interceptor does.
func recovered(f func() (any, error)) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, status.Errorf(codes.Internal, "panic: %v", r)
		}
	}()
	return f()
}

func serviceDesc(s *server) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "blindspot.test.Echo",
		HandlerType: (*echo)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: s.unary}},
		Streams: []grpc.StreamDesc{
			{StreamName: "ServerStream", Handler: s.serverStream, ServerStreams: true},
			{StreamName: "Bidi", Handler: s.bidi, ServerStreams: true, ClientStreams: true},
		},
	}
}

func unaryCall(cc *grpc.ClientConn, ctx context.Context, method, what string) error {
	out := new(wrapperspb.StringValue)
	return cc.Invoke(ctx, method, wrapperspb.String(what), out)
}

var (
	serverStreamDesc = &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	bidiDesc         = &grpc.StreamDesc{StreamName: "Bidi", ServerStreams: true, ClientStreams: true}
)

func serverStreamCall(cc *grpc.ClientConn, ctx context.Context, what string) error {
	st, err := cc.NewStream(ctx, serverStreamDesc, "/blindspot.test.Echo/ServerStream")
	if err != nil {
		return err
	}
	if err := st.SendMsg(wrapperspb.String(what)); err != nil {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		if err := st.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func bidiCall(cc *grpc.ClientConn, ctx context.Context, end string) error {
	st, err := cc.NewStream(ctx, bidiDesc, "/blindspot.test.Echo/Bidi")
	if err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		if err := st.SendMsg(wrapperspb.String("next")); err != nil {
			return err
		}
		if err := st.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			return err
		}
	}
	if end == "eof" {
		if err := st.CloseSend(); err != nil {
			return err
		}
	} else if err := st.SendMsg(wrapperspb.String(end)); err != nil {
		return err
	}
	for {
		if err := st.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// round runs the script once; the expected counts per (method, code) are
// in test/e2e/grpc_test.go. Calls the server never sees (none here) would
// not be awaited.
func round(s *server, cc *grpc.ClientConn) {
	bg := context.Background()
	call := func(f func() error) {
		// Unknown is the code of an error that is no status (a mistake
		// here), unless asked for.
		if err := f(); err != nil && status.Code(err) == codes.Unknown && status.Convert(err).Message() != "asked for code:2" {
			fmt.Fprintln(os.Stderr, "unexpected error:", err)
		}
	}
	const unary = "/blindspot.test.Echo/Unary"
	s.handled.Add(24)
	for i := 0; i < 3; i++ {
		call(func() error { return unaryCall(cc, bg, unary, "ok") })
	}
	// Every status a handler can return, 1 (Canceled) to 16
	// (Unauthenticated).
	for n := 1; n <= 16; n++ {
		call(func() error { return unaryCall(cc, bg, unary, fmt.Sprintf("code:%d", n)) })
	}
	call(func() error { return unaryCall(cc, bg, unary, "panic") })
	// Deadline exceeded and cancellation, seen by both sides.
	call(func() error {
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		defer cancel()
		return unaryCall(cc, ctx, unary, "hang")
	})
	call(func() error {
		ctx, cancel := context.WithCancel(bg)
		time.AfterFunc(50*time.Millisecond, cancel)
		return unaryCall(cc, ctx, unary, "hang")
	})
	// Streams: OK, an error status, a panic.
	call(func() error { return serverStreamCall(cc, bg, "ok") })
	call(func() error { return serverStreamCall(cc, bg, "code:9") })
	s.handled.Add(3)
	call(func() error { return serverStreamCall(cc, bg, "panic") })
	call(func() error { return bidiCall(cc, bg, "eof") })
	call(func() error { return bidiCall(cc, bg, "code:8") })
	// An unknown method: the server answers Unimplemented without a handler.
	call(func() error { return unaryCall(cc, bg, "/blindspot.test.Echo/NoSuchMethod", "ok") })
	// Reset by the client before the response: the handler answers OK
	// after the client gave up (its RST_STREAM came first).
	s.handled.Add(1)
	call(func() error {
		ctx, cancel := context.WithCancel(bg)
		time.AfterFunc(50*time.Millisecond, cancel)
		return unaryCall(cc, ctx, unary, "sleep:300")
	})
	// The client's connection closed before the answer: a ClientConn of
	// its own, closed while the handler runs.
	s.handled.Add(1)
	call(func() error {
		own := dialServer()
		time.AfterFunc(50*time.Millisecond, func() { own.Close() })
		return unaryCall(own, bg, unary, "sleep:300")
	})
	// Reset by the client, then its connection closed, before the answer:
	// the answer fails on the transport itself.
	s.handled.Add(1)
	call(func() error {
		own := dialServer()
		ctx, cancel := context.WithCancel(bg)
		time.AfterFunc(50*time.Millisecond, cancel)
		time.AfterFunc(100*time.Millisecond, func() { own.Close() })
		return unaryCall(own, ctx, unary, "sleep:300")
	})
	s.handled.Wait()
}

// dialServer opens a new ClientConn to the program's own server.
var dialServer func() *grpc.ClientConn

// failing runs calls whose stream is never created, each twice unary and
// twice streaming: to a closed port (Unavailable; and once each through
// interceptors), to a listener that
// accepts and never answers, with a deadline (DeadlineExceeded while the
// connection is made), and on a closed ClientConn (Canceled).
func failing(closed, silent, open string, copts []grpc.DialOption) {
	bg := context.Background()
	const unary = "/blindspot.test.Echo/Unary"
	call := func(f func() error, want codes.Code) {
		if err := f(); status.Code(err) != want {
			fmt.Fprintf(os.Stderr, "unexpected error: %v (want %v)\n", err, want)
		}
	}
	dial := func(target string) *grpc.ClientConn {
		cc, err := grpc.Dial(target, copts...)
		if err != nil {
			panic(err)
		}
		return cc
	}
	cc := dial(closed)
	for i := 0; i < 2; i++ {
		call(func() error { return unaryCall(cc, bg, unary, "ok") }, codes.Unavailable)
		call(func() error { return serverStreamCall(cc, bg, "ok") }, codes.Unavailable)
	}
	cc.Close()
	// The same through interceptors, which call newClientStream through a
	// function value: once each.
	cc, err := grpc.Dial(closed, append(copts,
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(ctx, desc, cc, method, opts...)
		}))...)
	if err != nil {
		panic(err)
	}
	call(func() error { return unaryCall(cc, bg, unary, "ok") }, codes.Unavailable)
	call(func() error { return serverStreamCall(cc, bg, "ok") }, codes.Unavailable)
	cc.Close()
	cc = dial(silent)
	for i := 0; i < 2; i++ {
		call(func() error {
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			defer cancel()
			return unaryCall(cc, ctx, unary, "ok")
		}, codes.DeadlineExceeded)
		call(func() error {
			ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
			defer cancel()
			return serverStreamCall(cc, ctx, "ok")
		}, codes.DeadlineExceeded)
	}
	cc.Close()
	cc = dial(open)
	cc.Close()
	for i := 0; i < 2; i++ {
		call(func() error { return unaryCall(cc, bg, unary, "ok") }, codes.Canceled)
		call(func() error { return serverStreamCall(cc, bg, "ok") }, codes.Canceled)
	}
}

// burst makes n unary calls at once, each held by the server for ms.
func burst(s *server, cc *grpc.ClientConn, n, ms int) {
	s.handled.Add(n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := unaryCall(cc, context.Background(), "/blindspot.test.Echo/Unary", "sleep:"+strconv.Itoa(ms)); err != nil {
				fmt.Fprintln(os.Stderr, "unexpected error:", err)
			}
		}()
	}
	wg.Wait()
	s.handled.Wait()
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var sopts []grpc.ServerOption
	var copts []grpc.DialOption
	if len(os.Args) > 1 && os.Args[1] == "tls" {
		cert, pool := selfSigned()
		sopts = append(sopts, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
		copts = append(copts, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	} else {
		copts = append(copts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	s := &server{}
	gs := grpc.NewServer(sopts...)
	gs.RegisterService(serviceDesc(s), s)
	go gs.Serve(ln)
	target := "localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dialServer = func() *grpc.ClientConn {
		cc, err := grpc.Dial(target, copts...)
		if err != nil {
			panic(err)
		}
		return cc
	}
	cc := dialServer()
	// A port nothing listens on, and a listener that accepts connections
	// and never answers.
	closedPort := refusedPort()
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		var held []net.Conn
		for {
			c, err := sl.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	fmt.Println("port", ln.Addr().(*net.TCPAddr).Port)
	fmt.Println("closed", closedPort)
	fmt.Println("silent", sl.Addr().(*net.TCPAddr).Port)
	rounds := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 1 && f[0] == "run":
			rounds++
			round(s, cc)
			failing("localhost:"+strconv.Itoa(closedPort), "localhost:"+strconv.Itoa(sl.Addr().(*net.TCPAddr).Port), target, copts)
			fmt.Println("done", rounds)
		case len(f) == 3 && f[0] == "burst":
			n, _ := strconv.Atoi(f[1])
			ms, _ := strconv.Atoi(f[2])
			burst(s, cc, n, ms)
			fmt.Println("burst done", n)
		}
	}
}

// selfSigned makes a certificate for localhost and a pool trusting it.
func selfSigned() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// refusedPort returns a port that refuses connections for as long as this
// program runs: a socket bound to it on every address that never listens.
// Without SO_REUSEADDR no other socket can bind the port, as one could a
// closed listener's port (another test's program once listened on it).
func refusedPort() int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{}); err != nil {
		log.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		log.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
