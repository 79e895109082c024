//! Nothing here: the tests are in `tests/`, each file a test target of its own.
