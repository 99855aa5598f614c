package network

import (
	"strings"
	"testing"

	"banger/internal/errdefs"
)

func TestConfigValidate(t *testing.T) {
	valid := Config{BridgeName: "br-fc", BridgeIP: "172.16.0.1", CIDR: "24"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings; nil means valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "slash 30", mutate: func(c *Config) { c.BridgeIP, c.CIDR = "10.0.0.1", "30" }},
		{name: "slash 1", mutate: func(c *Config) { c.BridgeIP, c.CIDR = "10.0.0.1", "1" }},
		{name: "fifteen char name", mutate: func(c *Config) { c.BridgeName = "abcdefghijklmno" }},
		{name: "bad ip", mutate: func(c *Config) { c.BridgeIP = "x" }, wantErr: []string{`bridge_ip "x": not an IPv4 address`}},
		{name: "ipv6 ip", mutate: func(c *Config) { c.BridgeIP = "fd00::1" }, wantErr: []string{`bridge_ip "fd00::1": not an IPv4 address`}},
		{name: "mapped ip", mutate: func(c *Config) { c.BridgeIP = "::ffff:172.16.0.1" }, wantErr: []string{"not an IPv4 address"}},
		{name: "ip with prefix", mutate: func(c *Config) { c.BridgeIP = "172.16.0.1/24" }, wantErr: []string{"not an IPv4 address"}},
		{name: "empty ip", mutate: func(c *Config) { c.BridgeIP = "" }, wantErr: []string{`bridge_ip ""`}},
		{name: "network address", mutate: func(c *Config) { c.BridgeIP = "172.16.0.0" }, wantErr: []string{"network or broadcast address of 172.16.0.0/24"}},
		{name: "broadcast address", mutate: func(c *Config) { c.BridgeIP = "172.16.0.255" }, wantErr: []string{"network or broadcast"}},
		{name: "prefix 0", mutate: func(c *Config) { c.CIDR = "0" }, wantErr: []string{`cidr "0": not a prefix length in 1..30`}},
		{name: "prefix 31", mutate: func(c *Config) { c.CIDR = "31" }, wantErr: []string{`cidr "31"`}},
		{name: "prefix 33", mutate: func(c *Config) { c.CIDR = "33" }, wantErr: []string{`cidr "33"`}},
		{name: "prefix with slash", mutate: func(c *Config) { c.CIDR = "/24" }, wantErr: []string{`cidr "/24"`}},
		{name: "prefix signed", mutate: func(c *Config) { c.CIDR = "+24" }, wantErr: []string{`cidr "+24"`}},
		{name: "prefix empty", mutate: func(c *Config) { c.CIDR = "" }, wantErr: []string{`cidr ""`}},
		{name: "name empty", mutate: func(c *Config) { c.BridgeName = "" }, wantErr: []string{`bridge_name "": interface name is empty`}},
		{name: "name too long", mutate: func(c *Config) { c.BridgeName = "abcdefghijklmnop" }, wantErr: []string{"longer than 15"}},
		{name: "name with slash", mutate: func(c *Config) { c.BridgeName = "br/fc" }, wantErr: []string{"invalid character '/'"}},
		{name: "name with space", mutate: func(c *Config) { c.BridgeName = "br fc" }, wantErr: []string{"invalid character ' '"}},
		{name: "name with colon", mutate: func(c *Config) { c.BridgeName = "br:0" }, wantErr: []string{"invalid character ':'"}},
		{name: "name dot", mutate: func(c *Config) { c.BridgeName = "." }, wantErr: []string{"cannot be . or .."}},
		{
			name:    "every field bad at once",
			mutate:  func(c *Config) { *c = Config{BridgeName: "", BridgeIP: "1.2.3", CIDR: "99"} },
			wantErr: []string{"bridge_name", `bridge_ip "1.2.3"`, `cidr "99"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want error containing %q", c, tt.wantErr)
			}
			if !errdefs.IsInvalid(err) {
				t.Errorf("Validate error %v is not errdefs.ErrInvalid", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got error %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestConfigSubnet(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    string
		wantErr bool
	}{
		{name: "default", cfg: Config{BridgeIP: "172.16.0.1", CIDR: "24"}, want: "172.16.0.0/24"},
		{name: "slash 30", cfg: Config{BridgeIP: "10.1.2.6", CIDR: "30"}, want: "10.1.2.4/30"},
		{name: "slash 16", cfg: Config{BridgeIP: "192.168.7.1", CIDR: "16"}, want: "192.168.0.0/16"},
		{name: "bad", cfg: Config{BridgeIP: "nope", CIDR: "24"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Subnet()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Subnet() = %v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Subnet(): %v", err)
			}
			if got.String() != tt.want {
				t.Errorf("got subnet %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	m, err := New(Config{BridgeName: "br-fc", BridgeIP: "x", CIDR: "24"}, nil)
	if err == nil {
		m.Close()
		t.Fatal("New with a bad bridge_ip succeeded, want error")
	}
	if !errdefs.IsInvalid(err) {
		t.Errorf("got error %v, want errdefs.ErrInvalid", err)
	}
}
