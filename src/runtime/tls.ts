import { constants as cryptoConstants } from "node:crypto";

/** OpenSSL options for TLS 1.3 only: every older protocol version is switched off. */
export const TLS13_ONLY =
  cryptoConstants.SSL_OP_NO_SSLv2 |
  cryptoConstants.SSL_OP_NO_SSLv3 |
  cryptoConstants.SSL_OP_NO_TLSv1 |
  cryptoConstants.SSL_OP_NO_TLSv1_1 |
  cryptoConstants.SSL_OP_NO_TLSv1_2;
