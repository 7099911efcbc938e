"""Common flexibility market of the TSO and DSOs; `allocation` splits its cost between the system operators."""
