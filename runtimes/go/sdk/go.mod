// The Kubeless function API as handlers import it, plus the worker that
// speaks the kubeless-runtime host protocol. kubeless-runtime compile wires
// this module in with a replace directive; it is not the upstream module.
module github.com/kubeless/kubeless

go 1.21
