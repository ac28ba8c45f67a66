"""churnwise: the public Python API (`churnwise.api`) and the plumbing every stage entry point shares."""
