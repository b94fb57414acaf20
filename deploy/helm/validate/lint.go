package main

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workload is a pod template and what runs it.
type workload struct {
	owner       string
	kind        string
	labels      map[string]string
	pod         corev1.PodSpec
	longRunning bool   // Deployment, StatefulSet, DaemonSet: probes required
	deadline    *int64 // Job, CronJob: activeDeadlineSeconds required
}

func workloadOf(o object) (workload, bool) {
	w := workload{owner: o.describe(), kind: o.gvk.Kind}
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		w.labels, w.pod, w.longRunning = t.Spec.Template.Labels, t.Spec.Template.Spec, true
	case *appsv1.StatefulSet:
		w.labels, w.pod, w.longRunning = t.Spec.Template.Labels, t.Spec.Template.Spec, true
	case *appsv1.DaemonSet:
		w.labels, w.pod, w.longRunning = t.Spec.Template.Labels, t.Spec.Template.Spec, true
	case *batchv1.Job:
		w.labels, w.pod, w.deadline = t.Spec.Template.Labels, t.Spec.Template.Spec, t.Spec.ActiveDeadlineSeconds
	case *batchv1.CronJob:
		spec := t.Spec.JobTemplate.Spec
		w.labels, w.pod, w.deadline = spec.Template.Labels, spec.Template.Spec, spec.ActiveDeadlineSeconds
	case *corev1.Pod:
		w.labels, w.pod, w.longRunning = t.Labels, t.Spec, true
	default:
		return w, false
	}
	return w, true
}

// lint checks what every pod of this project must do, and that references between the
// objects resolve.
func lint(objects []object) []string {
	var problems []string
	var workloads []workload
	deployments := map[string]bool{}
	for _, o := range objects {
		if w, ok := workloadOf(o); ok {
			workloads = append(workloads, w)
			problems = append(problems, lintPod(w)...)
		}
		if _, ok := o.typed.(*appsv1.Deployment); ok {
			deployments[o.name] = true
		}
	}
	matches := func(selector *metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil || s.Empty() {
			return false
		}
		for _, w := range workloads {
			if s.Matches(labels.Set(w.labels)) {
				return true
			}
		}
		return false
	}
	for _, o := range objects {
		where := o.describe()
		switch t := o.typed.(type) {
		case *corev1.Service:
			if !matches(&metav1.LabelSelector{MatchLabels: t.Spec.Selector}) {
				problems = append(problems, where+": its selector matches no pod template")
			}
		case *policyv1.PodDisruptionBudget:
			if !matches(t.Spec.Selector) {
				problems = append(problems, where+": its selector matches no pod template")
			}
		case *networkingv1.NetworkPolicy:
			if !matches(&t.Spec.PodSelector) {
				problems = append(problems, where+": its podSelector matches no pod template")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if ref := t.Spec.ScaleTargetRef; ref.Kind != "Deployment" || !deployments[ref.Name] {
				problems = append(problems, fmt.Sprintf("%s: scale target %s %q is not rendered", where, ref.Kind, ref.Name))
			}
		case *appsv1.Deployment:
			if !matches(t.Spec.Selector) {
				problems = append(problems, where+": its selector matches no pod template")
			}
		}
		if o.gvk.Group == "keda.sh" && o.gvk.Kind == "ScaledObject" {
			spec, _ := o.custom["spec"].(map[string]interface{})
			ref, _ := spec["scaleTargetRef"].(map[string]interface{})
			name, _ := ref["name"].(string)
			if kind, _ := ref["kind"].(string); (kind != "" && kind != "Deployment") || !deployments[name] {
				problems = append(problems, fmt.Sprintf("%s: scale target %q is not a rendered Deployment", where, name))
			}
		}
	}
	return problems
}

func lintPod(w workload) []string {
	var problems []string
	add := func(format string, args ...interface{}) {
		problems = append(problems, w.owner+": "+fmt.Sprintf(format, args...))
	}
	pod := w.pod
	podSC := pod.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		add("shares the node's network, PID or IPC namespace")
	}
	if w.deadline == nil && !w.longRunning {
		add("a Job without activeDeadlineSeconds can run forever")
	}
	check := func(c corev1.Container, init bool) {
		name := fmt.Sprintf("container %q", c.Name)
		if init {
			name = "init " + name
		}
		req, lim := c.Resources.Requests, c.Resources.Limits
		if req.Cpu().IsZero() || req.Memory().IsZero() {
			add("%s: no CPU or memory request", name)
		}
		if lim.Memory().IsZero() {
			add("%s: no memory limit", name)
		}
		sc := c.SecurityContext
		if sc == nil {
			add("%s: no securityContext", name)
			return
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && podSC.RunAsNonRoot != nil && *podSC.RunAsNonRoot)
		if !nonRoot {
			add("%s: runAsNonRoot is not true", name)
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = podSC.RunAsUser
		}
		if uid != nil && *uid == 0 {
			add("%s: runs as uid 0", name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			add("%s: allowPrivilegeEscalation is not false", name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			add("%s: privileged", name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			add("%s: readOnlyRootFilesystem is not true", name)
		}
		dropsAll := false
		if sc.Capabilities != nil {
			for _, cap := range sc.Capabilities.Drop {
				dropsAll = dropsAll || cap == "ALL"
			}
			if len(sc.Capabilities.Add) > 0 {
				add("%s: adds capabilities %v", name, sc.Capabilities.Add)
			}
		}
		if !dropsAll {
			add("%s: does not drop ALL capabilities", name)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = podSC.SeccompProfile
		}
		if seccomp == nil || seccomp.Type == corev1.SeccompProfileTypeUnconfined {
			add("%s: no seccomp profile (RuntimeDefault or Localhost)", name)
		}
		if init {
			return
		}
		if w.longRunning {
			if c.LivenessProbe == nil {
				add("%s: no livenessProbe", name)
			}
			if c.ReadinessProbe == nil {
				add("%s: no readinessProbe", name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if probe == nil {
				continue
			}
			var port *intstr.IntOrString
			if probe.HTTPGet != nil {
				port = &probe.HTTPGet.Port
			} else if probe.TCPSocket != nil {
				port = &probe.TCPSocket.Port
			}
			if port != nil && port.Type == intstr.String && !ports[port.StrVal] {
				add("%s: a probe uses port %q, which the container does not name", name, port.StrVal)
			}
		}
	}
	for _, c := range pod.InitContainers {
		check(c, true)
	}
	for _, c := range pod.Containers {
		check(c, false)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				add("container %q mounts volume %q, which the pod does not have", c.Name, m.Name)
			}
		}
	}
	return problems
}
