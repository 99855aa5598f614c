package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"banger/internal/api"
	"banger/internal/errdefs"
	"banger/internal/model"
	"banger/internal/rpc"
	"banger/internal/vm"
)

// register wires every RPC method to its service.
func (d *Daemon) register(srv *rpc.Server) {
	rpc.Register(srv, api.MethodDaemonStatus, d.status)
	rpc.Register(srv, api.MethodDaemonStop, func(ctx context.Context, _ api.Empty) (api.Empty, error) {
		d.Stop()
		return api.Empty{}, nil
	})

	rpc.Register(srv, api.MethodImageBuild, func(ctx context.Context, req api.ImageBuildRequest) (model.Image, error) {
		return d.images.Build(ctx, req, reporter(ctx, req.Name))
	})
	rpc.Register(srv, api.MethodImageList, func(ctx context.Context, _ api.Empty) ([]model.Image, error) {
		return d.store.ListImages(ctx)
	})
	rpc.Register(srv, api.MethodImageShow, func(ctx context.Context, r api.Ref) (api.ImageDetails, error) {
		return d.images.Details(ctx, r.Ref)
	})
	rpc.Register(srv, api.MethodImageDelete, func(ctx context.Context, r api.Ref) (api.Empty, error) {
		return api.Empty{}, d.images.Delete(ctx, r.Ref)
	})
	rpc.Register(srv, api.MethodImageRegister, func(ctx context.Context, req api.ImageRegisterRequest) (model.Image, error) {
		return d.images.Register(ctx, req)
	})
	rpc.Register(srv, api.MethodImagePull, d.pullImage)

	rpc.Register(srv, api.MethodVMCreate, func(ctx context.Context, req model.VMCreateRequest) (model.VMRecord, error) {
		return d.vms.Create(ctx, req, reporter(ctx, req.Name))
	})
	rpc.Register(srv, api.MethodVMList, func(ctx context.Context, _ api.Empty) ([]model.VMRecord, error) {
		return d.vms.List(ctx)
	})
	rpc.Register(srv, api.MethodVMShow, func(ctx context.Context, r api.Ref) (model.VMRecord, error) {
		return d.vms.Get(ctx, r.Ref)
	})
	rpc.Register(srv, api.MethodVMStart, d.each(func(ctx context.Context, ref string, _ api.Refs) (model.VMRecord, error) {
		return d.vms.Start(ctx, ref, reporter(ctx, ref))
	}))
	rpc.Register(srv, api.MethodVMStop, d.each(func(ctx context.Context, ref string, _ api.Refs) (model.VMRecord, error) {
		return d.vms.Stop(ctx, ref)
	}))
	rpc.Register(srv, api.MethodVMRestart, d.each(func(ctx context.Context, ref string, _ api.Refs) (model.VMRecord, error) {
		return d.vms.Restart(ctx, ref, reporter(ctx, ref))
	}))
	rpc.Register(srv, api.MethodVMKill, d.each(func(ctx context.Context, ref string, r api.Refs) (model.VMRecord, error) {
		sig, err := vm.ParseSignal(r.Signal)
		if err != nil {
			return model.VMRecord{}, err
		}
		return d.vms.Kill(ctx, ref, sig)
	}))
	rpc.Register(srv, api.MethodVMDelete, d.each(func(ctx context.Context, ref string, _ api.Refs) (model.VMRecord, error) {
		return d.vms.Delete(ctx, ref)
	}))
	rpc.Register(srv, api.MethodVMSSHInfo, func(ctx context.Context, r api.Ref) (api.SSHInfo, error) {
		rec, err := d.vms.SSHInfo(ctx, r.Ref)
		if err != nil {
			return api.SSHInfo{}, err
		}
		return api.SSHInfo{
			Name:       rec.Name,
			GuestIP:    rec.Runtime.GuestIP,
			User:       "root",
			KeyPath:    d.cfg.SSHKeyPath,
			KnownHosts: d.layout.KnownHosts(),
			WorkDir:    rec.Workspace.GuestPath,
			Workspace:  rec.Workspace,
		}, nil
	})
	rpc.Register(srv, api.MethodVMSet, func(ctx context.Context, req model.VMSetRequest) (model.VMRecord, error) {
		return d.vms.Set(ctx, req)
	})
	rpc.Register(srv, api.MethodVMPrune, d.each(func(ctx context.Context, ref string, _ api.Refs) (model.VMRecord, error) {
		return d.vms.Prune(ctx, ref)
	}))
	rpc.Register(srv, api.MethodVMWorkspaceSet, func(ctx context.Context, r api.WorkspaceSet) (model.VMRecord, error) {
		return d.vms.SetWorkspace(ctx, r.Ref, r.Workspace)
	})
	rpc.Register(srv, api.MethodVMLogs, func(ctx context.Context, r api.Ref) (api.VMLogs, error) {
		path, err := d.vms.ConsoleLog(ctx, r.Ref)
		return api.VMLogs{Path: path}, err
	})
	rpc.Register(srv, api.MethodVMStats, func(ctx context.Context, r api.Refs) ([]api.VMStatsEntry, error) {
		recs, err := d.sampler.Stats(ctx, r.Refs)
		if err != nil {
			return nil, err
		}
		out := make([]api.VMStatsEntry, 0, len(recs))
		for _, rec := range recs {
			out = append(out, api.VMStatsEntry{Name: rec.Name, ID: rec.ID, State: rec.State, Stats: rec.Stats})
		}
		return out, nil
	})
}

// each runs fn on every ref concurrently and reports each outcome, a
// failure with the request's operation id. A call naming one ref fails
// with that ref's error, which keeps its kind (not found, invalid, ...).
func (d *Daemon) each(fn func(ctx context.Context, ref string, r api.Refs) (model.VMRecord, error)) func(context.Context, api.Refs) (api.VMResults, error) {
	return func(ctx context.Context, r api.Refs) (api.VMResults, error) {
		if len(r.Refs) == 0 {
			return api.VMResults{}, errdefs.Invalid(errors.New("name at least one vm"))
		}
		var opID string
		if call := rpc.CallFrom(ctx); call != nil {
			opID = call.OpID
		}
		results := make([]api.VMResult, len(r.Refs))
		errs := make([]error, len(r.Refs))
		var wg sync.WaitGroup
		for i, ref := range r.Refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec, err := fn(ctx, ref, r)
				results[i] = api.VMResult{Ref: ref}
				if err != nil {
					errs[i] = err
					results[i].Error, results[i].OpID = err.Error(), opID
					return
				}
				results[i].VM = &rec
			}()
		}
		wg.Wait()
		if len(r.Refs) == 1 && errs[0] != nil {
			return api.VMResults{}, errs[0]
		}
		return api.VMResults{Results: results}, nil
	}
}

// reporter turns service progress into RPC notifications.
func reporter(ctx context.Context, subject string) func(step, msg string) {
	call := rpc.CallFrom(ctx)
	if call == nil {
		return nil
	}
	return func(step, msg string) {
		p := api.Progress{OpID: call.OpID, Subject: subject, Step: step, Message: msg}
		if name, ok := strings.CutPrefix(step, "step:"); ok {
			p.Step = name
			p.Verbose = true
		}
		call.Notify(api.NotifyProgress, p)
	}
}

func (d *Daemon) status(ctx context.Context, _ api.Empty) (api.DaemonStatus, error) {
	st := api.DaemonStatus{
		PID:        os.Getpid(),
		Version:    Version,
		Socket:     d.layout.Socket(),
		StateDir:   d.layout.StateDir,
		StartedAt:  d.started,
		VMM:        d.driver.Name(),
		Accel:      d.accel,
		AccelNote:  d.accelNote,
		SSHKey:     d.cfg.SSHKeyPath,
		KnownHosts: d.layout.KnownHosts(),
	}
	vms, err := d.store.ListVMs(ctx)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	st.VMsTotal = len(vms)
	for _, v := range vms {
		if v.State == model.VMStateRunning {
			st.VMsRunning++
		}
	}
	imgs, err := d.store.ListImages(ctx)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	st.Images = len(imgs)
	return st, nil
}
