//! CLI behaviour: exit codes and messages.
