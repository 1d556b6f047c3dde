//! End-to-end tests live in `tests/`; they drive the built `kubeless` binary against a real `kubeless server`.
