-- Client certificates of department systems: a system may authenticate with a certificate
-- (mutual TLS) instead of, or as well as, its API key. Only the SHA-256 of the certificate's
-- DER is kept, which is what the TLS layer presents.
ALTER TABLE systems ADD COLUMN cert_sha256 TEXT;
CREATE UNIQUE INDEX systems_cert_sha256 ON systems (cert_sha256);
