import { defineCommand, type OptionsFrom } from './declaration.js';
import { jsonFlag } from './shared-flags.js';

const doctorFlags = { ...jsonFlag };
export type DoctorOptions = OptionsFrom<{}, typeof doctorFlags>;

export const doctor = defineCommand({
  name: 'doctor',
  summary: 'check Node, Docker, the NVIDIA driver and the API settings',
  args: {},
  flags: doctorFlags,
  examples: ['cycle doctor', 'cycle doctor --json'],
  load: () => import('./doctor.js'),
});
