package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// startHealthServer serves the standard health service on 127.0.0.1:0 with
// ServerOptions(token) and returns its address.
func startHealthServer(t *testing.T, token string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(token)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestGRPC(t *testing.T) {
	const secret = "s3cret"
	addr := startHealthServer(t, secret)
	open := startHealthServer(t, "")
	tests := []struct {
		name, addr, token string
		want              codes.Code
	}{
		{"missing", addr, "", codes.Unauthenticated},
		{"wrong", addr, "nope", codes.PermissionDenied},
		{"right", addr, secret, codes.OK},
		{"auth disabled", open, "", codes.OK},
		{"auth disabled, token sent", open, "anything", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, DialOptions(tt.token)...)
			conn, err := grpc.NewClient(tt.addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := healthpb.NewHealthClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
			if got := status.Code(err); got != tt.want {
				t.Errorf("unary Check: code %v (%v), want %v", got, err, tt.want)
			}
			if tt.want == codes.Unauthenticated && !strings.Contains(err.Error(), "auth: missing token; set GORAY_AUTH_TOKEN") {
				t.Errorf("unary Check: message %q does not explain the fix", err)
			}

			stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				var resp *healthpb.HealthCheckResponse
				resp, err = stream.Recv()
				if err == nil && resp.Status != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("stream Watch: status %v, want SERVING", resp.Status)
				}
			}
			if got := status.Code(err); got != tt.want {
				t.Errorf("stream Watch: code %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestDialOptions(t *testing.T) {
	if opts := DialOptions(""); len(opts) != 0 {
		t.Errorf("DialOptions(\"\") = %d options, want none", len(opts))
	}
	md, err := bearer("x").GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer x" || bearer("x").RequireTransportSecurity() {
		t.Errorf("bearer metadata = %v, %v; want authorization \"Bearer x\" without transport security", md, err)
	}
}

func TestMiddleware(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
	tests := []struct {
		name, token string
		set         func(*http.Request)
		code        int
		body        string
	}{
		{"missing", "tok", func(*http.Request) {}, 401, "Unauthorized: Missing authentication token\n"},
		{"wrong", "tok", func(r *http.Request) { r.Header.Set("Authorization", "Bearer bad") }, 403, "Forbidden: Invalid authentication token\n"},
		{"not bearer", "tok", func(r *http.Request) { r.Header.Set("Authorization", "tok") }, 403, "Forbidden: Invalid authentication token\n"},
		{"right", "tok", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 200, "hello"},
		{"x-ray header", "tok", func(r *http.Request) { r.Header.Set("X-Ray-Authorization", "Bearer tok") }, 200, "hello"},
		{"cookie", "tok", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "ray-authentication-token", Value: "tok"}) }, 200, "hello"},
		{"wrong cookie", "tok", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "ray-authentication-token", Value: "x"}) }, 403, "Forbidden: Invalid authentication token\n"},
		{"disabled", "", func(*http.Request) {}, 200, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/jobs/", nil)
			tt.set(r)
			w := httptest.NewRecorder()
			Middleware(tt.token, ok).ServeHTTP(w, r)
			if w.Code != tt.code || w.Body.String() != tt.body {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tt.code, tt.body)
			}
		})
	}
}
