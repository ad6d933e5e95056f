// Preloaded (node --import) by regen.sh: pins JavaScript's clock to
// 2026-11-28T12:00:00Z so that strftime_now() renders reproducibly; the test
// renders with tpl_options.now = 1795867200 and TZ=UTC.
const FIXED = 1795867200000;
const RealDate = Date;
class FixedDate extends RealDate {
  constructor(...args) { if (args.length === 0) super(FIXED); else super(...args); }
  static now() { return FIXED; }
}
globalThis.Date = FixedDate;
