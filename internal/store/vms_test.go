package store

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"banger/internal/errdefs"
	"banger/internal/model"
)

// lowestFreeIP is the allocator the tests hand to CreateVM: the lowest
// address of 172.16.0.2-254 that used lacks.
func lowestFreeIP(used []string) (string, error) {
	for i := 2; i <= 254; i++ {
		ip := fmt.Sprintf("172.16.0.%d", i)
		if !slices.Contains(used, ip) {
			return ip, nil
		}
	}
	return "", errors.New("no free address")
}

// storeWithImage opens a store holding one image, "bookworm" with id img1.
func storeWithImage(t *testing.T) *Store {
	t.Helper()
	s, _ := openTestStore(t)
	if err := s.CreateImage(t.Context(), newImage("img1", "bookworm")); err != nil {
		t.Fatalf("CreateImage: %v", err)
	}
	return s
}

func TestVMCRUD(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	rec := newVM("0123456789ab", "web", "img1")
	rec.Runtime.State = model.VMStateRunning // State wins.
	rec.ImageName = "ignored"                // joined on read, never stored

	var gotUsed []string
	created, err := s.CreateVM(ctx, rec, func(used []string) (string, error) {
		gotUsed = used
		return lowestFreeIP(used)
	})
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	if len(gotUsed) != 0 {
		t.Errorf("got used %v, want none", gotUsed)
	}
	want := rec
	want.ImageName = "bookworm"
	want.Runtime.State = model.VMStateCreated
	want.Runtime.GuestIP = "172.16.0.2"
	if !reflect.DeepEqual(created, want) {
		t.Errorf("CreateVM returned\n%+v\nwant\n%+v", created, want)
	}
	got, err := s.GetVM(ctx, "web")
	if err != nil {
		t.Fatalf("GetVM: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetVM got\n%+v\nwant\n%+v", got, want)
	}

	upd := got
	upd.State = model.VMStateStopped
	upd.Name = "web2"
	upd.Spec.MemoryMiB = 4096
	upd.Runtime.PID = 0
	upd.Runtime.LastError = "boom"
	upd.Stats = model.VMStats{}
	upd.Workspace.HeadCommit = "cafe"
	upd.LastTouchedAt = testTime.Add(time.Hour)
	before := model.Now()
	if err := s.UpdateVM(ctx, upd); err != nil {
		t.Fatalf("UpdateVM: %v", err)
	}
	got, err = s.GetVM(ctx, upd.ID)
	if err != nil {
		t.Fatalf("GetVM after update: %v", err)
	}
	if got.UpdatedAt.Before(before) {
		t.Errorf("got UpdatedAt %v, want at least %v", got.UpdatedAt, before)
	}
	want = upd
	want.UpdatedAt = got.UpdatedAt
	want.Runtime.State = model.VMStateStopped
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after update got\n%+v\nwant\n%+v", got, want)
	}

	if err := s.DeleteVM(ctx, upd.ID); err != nil {
		t.Fatalf("DeleteVM: %v", err)
	}
	if _, err := s.GetVM(ctx, upd.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("got %v after delete, want ErrNotFound", err)
	}
	if err := s.DeleteVM(ctx, upd.ID); err != nil {
		t.Errorf("second DeleteVM: got %v, want nil", err)
	}
	if err := s.UpdateVM(ctx, upd); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("UpdateVM of deleted vm: got %v, want ErrNotFound", err)
	}
}

func TestCreateVMFillsTimes(t *testing.T) {
	s := storeWithImage(t)
	rec := newVM("vm01", "web", "img1")
	rec.CreatedAt, rec.UpdatedAt, rec.LastTouchedAt = time.Time{}, time.Time{}, time.Time{}
	got, err := s.CreateVM(t.Context(), rec, lowestFreeIP)
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	if got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) || !got.LastTouchedAt.Equal(got.CreatedAt) {
		t.Errorf("got times %v %v %v, want now three times", got.CreatedAt, got.UpdatedAt, got.LastTouchedAt)
	}
}

func TestCreateVMAllocatesDistinctIPs(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	var ips []string
	for i := range 5 {
		got, err := s.CreateVM(ctx, newVM(fmt.Sprintf("vm%02d", i), fmt.Sprintf("vm-%d", i), "img1"), lowestFreeIP)
		if err != nil {
			t.Fatalf("CreateVM %d: %v", i, err)
		}
		ips = append(ips, got.Runtime.GuestIP)
	}
	want := []string{"172.16.0.2", "172.16.0.3", "172.16.0.4", "172.16.0.5", "172.16.0.6"}
	if !reflect.DeepEqual(ips, want) {
		t.Errorf("got ips %v, want %v", ips, want)
	}
	// A freed address is offered again.
	if err := s.DeleteVM(ctx, "vm01"); err != nil {
		t.Fatal(err)
	}
	got, err := s.CreateVM(ctx, newVM("vm10", "vm-10", "img1"), lowestFreeIP)
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	if got.Runtime.GuestIP != "172.16.0.3" {
		t.Errorf("got ip %q, want the freed 172.16.0.3", got.Runtime.GuestIP)
	}
}

func TestVMErrors(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	for _, id := range []string{"abcdef01", "abcdef02"} {
		if _, err := s.CreateVM(ctx, newVM(id, "vm-"+id, "img1"), lowestFreeIP); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
	}
	allocErr := errors.New("pool exhausted")
	withIP := func(rec model.VMRecord, ip string) model.VMRecord { rec.Runtime.GuestIP = ip; return rec }
	withState := func(rec model.VMRecord, st model.VMState) model.VMRecord { rec.State = st; return rec }
	fixedIP := func(ip string) func([]string) (string, error) {
		return func([]string) (string, error) { return ip, nil }
	}
	failing := func([]string) (string, error) { return "", allocErr }
	create := func(rec model.VMRecord, alloc func([]string) (string, error)) func() error {
		return func() error { _, err := s.CreateVM(ctx, rec, alloc); return err }
	}
	update := func(rec model.VMRecord) func() error {
		return func() error { return s.UpdateVM(ctx, rec) }
	}
	get := func(ref string) func() error {
		return func() error { _, err := s.GetVM(ctx, ref); return err }
	}
	fresh := newVM("other1", "fresh", "img1")
	tests := []struct {
		name    string
		run     func() error
		kind    error
		wantMsg string
	}{
		{"duplicate name", create(newVM("other1", "vm-abcdef01", "img1"), lowestFreeIP),
			errdefs.ErrAlreadyExists, `vm "vm-abcdef01" already exists`},
		{"duplicate id", create(newVM("abcdef01", "fresh", "img1"), lowestFreeIP),
			errdefs.ErrAlreadyExists, `vm id "abcdef01" already exists`},
		{"unknown image", create(newVM("other1", "fresh", "img9"), lowestFreeIP),
			errdefs.ErrNotFound, `image "img9" not found`},
		{"taken guest ip", create(withIP(fresh, "172.16.0.2"), lowestFreeIP),
			errdefs.ErrConflict, `guest ip "172.16.0.2" is already in use`},
		{"allocator returns a taken ip", create(fresh, fixedIP("172.16.0.3")),
			errdefs.ErrConflict, `guest ip "172.16.0.3" is already in use`},
		{"allocator returns nothing", create(fresh, fixedIP("")),
			nil, `create vm "fresh": allocate guest ip: allocator returned no address`},
		{"allocator fails", create(fresh, failing),
			allocErr, `create vm "fresh": allocate guest ip: pool exhausted`},
		{"no ip and no allocator", create(fresh, nil),
			errdefs.ErrInvalid, `vm "fresh": no guest ip and no allocator`},
		{"bad state", create(withState(fresh, "paused"), lowestFreeIP),
			errdefs.ErrInvalid, `vm "fresh": unknown state "paused"`},
		{"rename onto taken name", update(withIP(newVM("abcdef02", "vm-abcdef01", "img1"), "172.16.0.3")),
			errdefs.ErrAlreadyExists, `vm "vm-abcdef01" already exists`},
		{"update onto taken ip", update(withIP(newVM("abcdef02", "vm-abcdef02", "img1"), "172.16.0.2")),
			errdefs.ErrConflict, `guest ip "172.16.0.2" is already in use by vm "vm-abcdef01"`},
		{"update without ip", update(newVM("abcdef02", "vm-abcdef02", "img1")),
			errdefs.ErrInvalid, `vm "vm-abcdef02": empty guest ip`},
		{"update missing", update(withIP(newVM("gone", "gone", "img1"), "172.16.0.9")),
			errdefs.ErrNotFound, `vm "gone" not found`},
		{"get missing", get("nope"),
			errdefs.ErrNotFound, `vm "nope" not found`},
		{"get ambiguous prefix", get("abcdef0"),
			errdefs.ErrInvalid, `vm id prefix "abcdef0" is ambiguous: it matches vm-abcdef01, vm-abcdef02; use more characters or the name`},
		{"get short prefix", get("abcde"),
			errdefs.ErrNotFound, `vm "abcde" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantMsg)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("got error %v, want kind %v", err, tt.kind)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("got message %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
	vms, err := s.ListVMs(ctx)
	if err != nil {
		t.Fatalf("ListVMs: %v", err)
	}
	if len(vms) != 2 {
		t.Errorf("got %d vms after failed writes, want 2", len(vms))
	}
}

func TestGetVMRefs(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	for _, rec := range []model.VMRecord{
		newVM("abcdef0123", "alpha", "img1"),
		newVM("fedcba9876", "abcdef0123", "img1"), // name equal to the other's id
		newVM("abcdef9999", "abcdef", "img1"),     // name equal to a shared prefix
	} {
		if _, err := s.CreateVM(ctx, rec, lowestFreeIP); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
	}
	tests := []struct {
		ref    string
		wantID string
	}{
		{"abcdef0123", "abcdef0123"}, // exact id before name
		{"alpha", "abcdef0123"},
		{"abcdef", "abcdef9999"}, // name before prefix
		{"fedcba", "fedcba9876"},
		{"abcdef01", "abcdef0123"},
		{"abcdef99", "abcdef9999"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := s.GetVM(ctx, tt.ref)
			if err != nil {
				t.Fatalf("GetVM: %v", err)
			}
			if got.ID != tt.wantID {
				t.Errorf("got id %q, want %q", got.ID, tt.wantID)
			}
		})
	}
}

func TestListVMsOrder(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// Created times with and without a fraction: text order of plain
	// RFC3339Nano would put 00.5 before 00.
	recs := []struct {
		id, name string
		created  time.Time
	}{
		{"vm01", "late", base.Add(2 * time.Second)},
		{"vm02", "half", base.Add(500 * time.Millisecond)},
		{"vm03", "b-first", base},
		{"vm04", "a-first", base},
		{"vm05", "one", base.Add(time.Second)},
	}
	for _, r := range recs {
		rec := newVM(r.id, r.name, "img1")
		rec.CreatedAt = r.created.In(time.FixedZone("east", 3600))
		if _, err := s.CreateVM(ctx, rec, lowestFreeIP); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
	}
	vms, err := s.ListVMs(ctx)
	if err != nil {
		t.Fatalf("ListVMs: %v", err)
	}
	var got []string
	for _, v := range vms {
		got = append(got, v.Name)
		if v.ImageName != "bookworm" {
			t.Errorf("vm %q: got image name %q, want bookworm", v.Name, v.ImageName)
		}
		if v.CreatedAt.Location() != time.UTC {
			t.Errorf("vm %q: got created at in %v, want UTC", v.Name, v.CreatedAt.Location())
		}
	}
	if want := []string{"a-first", "b-first", "half", "one", "late"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got order %v, want %v", got, want)
	}
}

func TestImageNameFollowsRename(t *testing.T) {
	s := storeWithImage(t)
	ctx := t.Context()
	if _, err := s.CreateVM(ctx, newVM("vm01", "web", "img1"), lowestFreeIP); err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	img, err := s.GetImage(ctx, "img1")
	if err != nil {
		t.Fatal(err)
	}
	img.Name = "trixie"
	if err := s.UpdateImage(ctx, img); err != nil {
		t.Fatalf("UpdateImage: %v", err)
	}
	got, err := s.GetVM(ctx, "web")
	if err != nil {
		t.Fatalf("GetVM: %v", err)
	}
	if got.ImageName != "trixie" {
		t.Errorf("got image name %q, want trixie", got.ImageName)
	}
}
