"""The standing set of adversarial kernels (issue 13): cheats the runtime model must flag."""
