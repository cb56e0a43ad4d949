-- web-scraper: fetch public web pages over HTTP and HTTPS.
--
-- Allows: TCP connections to any public IPv4 or IPv6 address on ports 80
--   and 443; importing socket, ssl, http.client, urllib, html.parser and
--   json to fetch and parse pages.
-- Does not allow: any other port (no DNS on 53, no SMTP, no databases);
--   private, loopback, link-local and shared address space (cloud metadata
--   at 169.254.169.254, the host's own services, the internal network) on
--   any port; any file access (no fs rules: nothing is read or written);
--   any broker capability.
-- The internal ranges are deny rules, and deny beats every allow: a policy
--   that extends this one cannot re-open them. To scrape an internal host,
--   copy this file instead of extending it.
-- Hardened mode accepts it where cgroup BPF judges addresses (see
--   `luaisolate doctor`); with Landlock alone only ports are judged, and
--   `luaisolate check --mode hardened web-scraper` says which rules fail.
-- Host names are resolved by the C library inside the cell; the guards
--   judge the address that connect() receives.
return {
  version = 1,
  imports = { "socket", "ssl", "http.client", "urllib", "html.parser", "json" },
  net = {
    { connect = "0.0.0.0/0:80" },
    { connect = "0.0.0.0/0:443" },
    { connect = "[::]/0:80" },
    { connect = "[::]/0:443" },
    -- IPv4: "this network", private, CGNAT, loopback, link-local, multicast
    { deny = "0.0.0.0/8:*" },
    { deny = "10.0.0.0/8:*" },
    { deny = "100.64.0.0/10:*" },
    { deny = "127.0.0.0/8:*" },
    { deny = "169.254.0.0/16:*" },
    { deny = "172.16.0.0/12:*" },
    { deny = "192.168.0.0/16:*" },
    { deny = "224.0.0.0/4:*" },
    -- IPv6: unspecified and loopback, unique local, link-local, multicast
    { deny = "[::]/127:*" },
    { deny = "[fc00::]/7:*" },
    { deny = "[fe80::]/10:*" },
    { deny = "[ff00::]/8:*" },
  },
}
