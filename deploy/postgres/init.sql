-- Run once by the official postgres image on an empty data volume (docker-entrypoint-initdb.d),
-- as the POSTGRES_USER of compose.yml: one database per scaled service, owned by that user.
-- The services create their tables themselves (versioned migrations, run at start).
CREATE DATABASE sm_kms;
CREATE DATABASE pki_ca;
CREATE DATABASE identity_authz;
