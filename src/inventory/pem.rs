//! Reading a certificate's PEM: its notAfter and SHA-256 fingerprint, and reconciling that
//! with the `expirationDate` API Gateway reports. Pure functions; a bad PEM is a warning on
//! the certificate, never an error of the scan.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::model::ExpirySource;

/// What the PEM says, when it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFacts {
    pub not_after: DateTime<Utc>,
    pub fingerprint_sha256: String,
}

/// Parses the first certificate of a PEM text.
pub fn read_pem(pem: &str) -> Result<PemFacts, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("the PEM could not be decoded: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "the PEM holds a '{}', not a CERTIFICATE",
            block.label
        ));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| format!("the PEM is not a valid X.509 certificate: {e}"))?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "the certificate's notAfter is out of range".to_string())?;
    Ok(PemFacts {
        not_after,
        fingerprint_sha256: hex::encode(Sha256::digest(&block.contents)),
    })
}

/// The expiry that counts, where it came from, the fingerprint, and any warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub not_after: Option<DateTime<Utc>>,
    pub source: Option<ExpirySource>,
    pub fingerprint_sha256: Option<String>,
    pub warnings: Vec<String>,
}

/// Cross-checks `expirationDate` with the PEM: the earlier of the two counts, because acting
/// early costs a ticket while acting late costs an outage.
pub fn effective_expiry(expiration_date: Option<DateTime<Utc>>, pem: Option<&str>) -> Expiry {
    let mut warnings = Vec::new();
    let facts = match pem {
        Some(text) if !text.trim().is_empty() => match read_pem(text) {
            Ok(f) => Some(f),
            Err(e) => {
                warnings.push(e);
                None
            }
        },
        _ => {
            warnings.push("no PEM was returned for this certificate".to_string());
            None
        }
    };
    let pem_not_after = facts.as_ref().map(|f| f.not_after);
    let (not_after, source) = match (expiration_date, pem_not_after) {
        (Some(api), Some(pem)) if (api - pem).num_seconds().abs() <= 1 => {
            (Some(api.min(pem)), Some(ExpirySource::Both))
        }
        (Some(api), Some(pem)) => {
            warnings.push(format!(
                "expirationDate {} disagrees with the PEM's notAfter {}; the earlier counts",
                api.to_rfc3339(),
                pem.to_rfc3339()
            ));
            (Some(api.min(pem)), Some(ExpirySource::EarlierOfTwo))
        }
        (Some(api), None) => (Some(api), Some(ExpirySource::ExpirationDate)),
        (None, Some(pem)) => {
            warnings.push("no expirationDate was returned; using the PEM's notAfter".into());
            (Some(pem), Some(ExpirySource::Pem))
        }
        (None, None) => {
            warnings.push("the expiry is unknown: no expirationDate and no readable PEM".into());
            (None, None)
        }
    };
    Expiry {
        not_after,
        source,
        fingerprint_sha256: facts.map(|f| f.fingerprint_sha256),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed P-256 certificate, notAfter 2027-03-01T00:00:00Z, made for this test with
    // Python's `cryptography`; its SHA-256 fingerprint as `openssl x509 -fingerprint` gives it.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBNzCB3qADAgECAhQ6O43MPec9tevp6Weao1hAHbAW7zAKBggqhkjOPQQDAjAc
MRowGAYDVQQDDBFjZXJ0c2VudGluZWwtdGVzdDAeFw0yNjAxMDEwMDAwMDBaFw0y
NzAzMDEwMDAwMDBaMBwxGjAYBgNVBAMMEWNlcnRzZW50aW5lbC10ZXN0MFkwEwYH
KoZIzj0CAQYIKoZIzj0DAQcDQgAEzaKAFKoLkFonDepETIgLUAoeYBs3QcUzmdtX
27ged0B9EIr31d+86At9OtBdKHShwM6oTdNy8bXQUUtmZCJSKjAKBggqhkjOPQQD
AgNIADBFAiBuRTwHjzpgW/fB9R/jXuFSScEsTAC4DjhfziQkFL11dwIhAON/ymm+
QLhLHMS1O9dz7/BdiJGVSgJaUORMSxdih7oD
-----END CERTIFICATE-----
";
    const FINGERPRINT: &str = "5b1466df7ae14754d570676280edb7b245bff16b869f8ec3d853dde1fede4b0b";

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reads_not_after_and_fingerprint() {
        let facts = read_pem(PEM).unwrap();
        assert_eq!(facts.not_after, ts("2027-03-01T00:00:00Z"));
        assert_eq!(facts.fingerprint_sha256, FINGERPRINT);
    }

    #[test]
    fn agreeing_dates_come_from_both() {
        let e = effective_expiry(Some(ts("2027-03-01T00:00:00Z")), Some(PEM));
        assert_eq!(e.source, Some(ExpirySource::Both));
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }

    #[test]
    fn a_mismatch_warns_and_the_earlier_counts() {
        let later = effective_expiry(Some(ts("2027-06-01T00:00:00Z")), Some(PEM));
        assert_eq!(later.not_after, Some(ts("2027-03-01T00:00:00Z")));
        assert_eq!(later.source, Some(ExpirySource::EarlierOfTwo));
        assert_eq!(later.warnings.len(), 1);
        let earlier = effective_expiry(Some(ts("2026-12-01T00:00:00Z")), Some(PEM));
        assert_eq!(earlier.not_after, Some(ts("2026-12-01T00:00:00Z")));
    }

    #[test]
    fn garbage_is_a_warning_not_a_crash() {
        let e = effective_expiry(Some(ts("2027-01-01T00:00:00Z")), Some("not a pem"));
        assert_eq!(e.not_after, Some(ts("2027-01-01T00:00:00Z")));
        assert_eq!(e.source, Some(ExpirySource::ExpirationDate));
        assert_eq!(e.warnings.len(), 1);
        assert!(e.fingerprint_sha256.is_none());
    }

    #[test]
    fn nothing_readable_leaves_the_expiry_unknown() {
        let e = effective_expiry(None, None);
        assert_eq!(e.not_after, None);
        assert!(e.warnings.iter().any(|w| w.contains("unknown")));
    }
}
