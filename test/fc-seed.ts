// Property tests draw a random seed each run unless XCONF_FC_SEED fixes one for every
// fc.assert without a seed of its own: `.ci/run` derives it from the commit, so a CI run
// of a commit repeats exactly, and a property failure there replays with the same value.
import fc from 'fast-check';

const raw = process.env.XCONF_FC_SEED;
if (raw !== undefined && raw !== '') {
  if (!/^-?\d+$/.test(raw)) throw new Error(`XCONF_FC_SEED='${raw}': expected an integer`);
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: Number(raw) | 0 });
}
