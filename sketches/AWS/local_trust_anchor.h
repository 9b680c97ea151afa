// The BearSSL trust anchor for a local cloud's CA, built from the two arrays config.h holds
// (LOCAL_CA_DN: the CA's subject, DER; LOCAL_CA_EC_Q: its P-256 public key, uncompressed).
// With AWS IoT, config.h sets KIT_LOCAL_CA to 0 and the sketch uses amazon_trust_anchors.h.
#pragma once

#if KIT_LOCAL_CA
static const br_x509_trust_anchor LOCAL_TRUST_ANCHORS[] = {{
  {(unsigned char*)LOCAL_CA_DN, sizeof LOCAL_CA_DN},
  BR_X509_TA_CA,
  {BR_KEYTYPE_EC, {.ec = {BR_EC_secp256r1, (unsigned char*)LOCAL_CA_EC_Q, sizeof LOCAL_CA_EC_Q}}},
}};
static const int LOCAL_TRUST_ANCHORS_NUM = 1;
#endif
