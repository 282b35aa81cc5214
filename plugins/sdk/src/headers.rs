//! The header methods `Request` and `Response` share, each over its own host interface.

/// Expands, inside an `impl`, to the header accessors over `$host` (the `request` or `response` import).
macro_rules! header_methods {
    ($host:ident) => {
        /// The first value of a header; names are case-insensitive.
        pub fn header(&self, name: &str) -> Option<Vec<u8>> {
            $host::header(name)
        }

        /// The first value of a header as text; `None` when it is absent or not UTF-8.
        pub fn header_str(&self, name: &str) -> Option<String> {
            String::from_utf8(self.header(name)?).ok()
        }

        /// Every value of a header, in order.
        pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            $host::header_all(name)
        }

        /// Every header as `(name, value)`, in order.
        pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
            $host::headers()
        }

        /// Replaces every value of a header. The host refuses invalid names and values (CR, LF, NUL) and
        /// hop-by-hop headers.
        pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> crate::Result<()> {
            Ok($host::set_header(name, value.as_ref())?)
        }

        /// Adds a value after the header's existing ones.
        pub fn append_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> crate::Result<()> {
            Ok($host::append_header(name, value.as_ref())?)
        }

        pub fn remove_header(&mut self, name: &str) -> crate::Result<()> {
            Ok($host::remove_header(name)?)
        }
    };
}

pub(crate) use header_methods;
