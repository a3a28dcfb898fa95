package client

import (
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ParseAddress reports whether addr names a client server (goray:// or
// ray://, in any letter case) and returns its host:port. A host without a
// port means DefaultPort (10001), as Ray's ray://HOST does; an empty host
// or an empty port after the colon is an error.
func ParseAddress(addr string) (hostport string, ok bool, err error) {
	scheme, rest, found := strings.Cut(addr, "://")
	if !found {
		return "", false, nil
	}
	if s := strings.ToLower(scheme); s != "goray" && s != "ray" {
		return "", false, nil
	}
	rest = strings.TrimRight(rest, "/")
	bad := func(why string) (string, bool, error) {
		return "", true, fmt.Errorf("goray: client server address %q: %s; want goray://HOST[:PORT] (port %d by default)", addr, why, DefaultPort)
	}
	if rest == "" {
		return bad("no host")
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		// No port (HOST, or a bare IPv6 address in brackets).
		h := strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
		if strings.ContainsAny(h, "/[]") || (strings.Contains(h, ":") && !strings.HasPrefix(rest, "[")) {
			return bad("cannot read HOST:PORT")
		}
		return net.JoinHostPort(h, fmt.Sprint(DefaultPort)), true, nil
	}
	if host == "" {
		return bad("no host")
	}
	if port == "" {
		return bad("empty port after the colon")
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || fmt.Sprint(p) != port || p < 1 || p > 65535 {
		return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", port))
	}
	return rest, true, nil
}

// MaxGrace is the longest reconnect grace period a client may ask for; the
// server caps what it grants at its own MaxGrace, 1 h by default.
const MaxGrace = time.Hour

// CheckGrace validates a reconnect grace period given by the program: 0
// means the default (DefaultGrace, on client and server alike), negatives
// are refused and longer than MaxGrace is capped.
func CheckGrace(d time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("goray: client reconnect grace period %s is negative", d)
	case d == 0:
		return DefaultGrace, nil
	}
	return min(d, MaxGrace), nil
}

// secondsDuration converts s seconds to a Duration, saturating at
// math.MaxInt64 instead of overflowing.
func secondsDuration(s float64) time.Duration {
	if s*float64(time.Second) >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}

// NotGCSHint rewrites the error of a GCS call made to addr when the peer is
// a client server (it does not implement GcsService): the status message
// then suggests goray://addr. Other errors come back unchanged.
func NotGCSHint(addr string, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "GcsService") {
		return err
	}
	return status.Errorf(codes.Unimplemented, "%s is not a GCS but looks like a goray client server (Ray Client); to connect through it use the address goray://%s", addr, addr)
}

// NotGCSInterceptor applies NotGCSHint to every unary call of a connection
// to the GCS at addr.
func NotGCSInterceptor(addr string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return NotGCSHint(addr, invoker(ctx, method, req, reply, cc, opts...))
	}
}
