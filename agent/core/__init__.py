"""Pure core: plain functions over values. No sockets, no event loop, no SQLite, no clocks."""
