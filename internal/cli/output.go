package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"banger/internal/model"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printVMTable(w io.Writer, vms []model.VMRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tIP\tIMAGE\tVCPU\tMEMORY\tDISK\tCREATED")
	for _, v := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", v.Name, v.State, v.Runtime.GuestIP, v.ImageName,
			v.Spec.VCPUCount, model.FormatSizeBytes(int64(v.Spec.MemoryMiB)<<20), model.FormatSizeBytes(v.Spec.WorkDiskSizeBytes), ago(v.CreatedAt))
	}
	return tw.Flush()
}

func printVM(w io.Writer, v model.VMRecord) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, val string) {
		if val != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, val)
		}
	}
	row("Name", v.Name)
	row("ID", v.ID)
	row("State", string(v.State))
	row("Image", v.ImageName)
	row("IP", v.Runtime.GuestIP)
	row("DNS", v.Runtime.DNSName)
	row("MAC", v.Runtime.MACAddress)
	row("vCPUs", fmt.Sprint(v.Spec.VCPUCount))
	row("Memory", model.FormatSizeBytes(int64(v.Spec.MemoryMiB)<<20))
	row("Work disk", model.FormatSizeBytes(v.Spec.WorkDiskSizeBytes)+" at /root ("+v.Runtime.WorkDiskPath+")")
	row("System overlay", model.FormatSizeBytes(v.Spec.SystemOverlaySizeByte)+" ("+v.Runtime.SystemOverlay+")")
	row("NAT", fmt.Sprint(v.Spec.NATEnabled))
	if v.Runtime.VMM != "" && v.Runtime.Accel != "" {
		row("VMM", v.Runtime.VMM+" ("+v.Runtime.Accel+")")
	} else {
		row("VMM", v.Runtime.VMM)
	}
	row("Rootfs backend", v.Runtime.RootfsBackend)
	if v.Runtime.PID != 0 && v.State == model.VMStateRunning {
		row("PID", fmt.Sprint(v.Runtime.PID))
	}
	row("TAP", v.Runtime.TapDevice)
	row("Console log", v.Runtime.LogPath)
	row("Created", v.CreatedAt.Local().Format(time.RFC3339))
	row("Last error", v.Runtime.LastError)
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
