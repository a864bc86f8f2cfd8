// The control plane's state in SQLite (better-sqlite3, WAL, synchronous=FULL: a change the API acknowledged survives
// a power loss): accounts, instances, key pairs, volumes, tags, client tokens, and each account's VPCs, subnets,
// security groups with their rules, and network interfaces. One `azote up` owns a data directory at a time (the lock is taken by the server); `azote account create`
// may write beside it. Every query is scoped by account: a resource of another account is never found.
import Database from 'better-sqlite3';
import path from 'node:path';

export type InstanceStateName = 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopping' | 'stopped';

/** EC2's state codes (the low byte of InstanceState.Code). */
export const STATE_CODES: Record<InstanceStateName, number> = {
  pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80,
};

export interface AccountRow {
  readonly id: string;
  readonly name: string;
  readonly access_key_id: string;
  readonly sealed_secret: Buffer;
  readonly created: string;
}

export interface InstanceRow {
  readonly id: string;
  readonly account: string;
  readonly reservation: string;
  readonly image_id: string;
  readonly instance_type: string;
  readonly vcpus: number;
  readonly memory_mib: number;
  readonly root_gib: number;
  readonly state: InstanceStateName;
  /** EC2's StateTransitionReason ("User initiated (2026-11-23 10:00:00 GMT)"). */
  readonly transition_reason: string;
  readonly state_reason_code: string | null;
  readonly state_reason_message: string | null;
  readonly key_name: string | null;
  readonly user_data: string | null;
  readonly launch_index: number;
  readonly launch_time: string;
  readonly client_token: string | null;
  readonly private_ip: string | null;
  readonly mac: string | null;
  /** The host CPUs the instance's VM holds while it has one ("0,1"), else "". */
  readonly cores: string;
  /** When it became terminated (its record is forgotten some time after). */
  readonly terminated_at: string | null;
  /** RunInstances' HibernationOptions.Configured: 1 if StopInstances may hibernate it, else 0. */
  readonly hibernation_configured: number;
  readonly seq: number;
}

export interface KeyPairRow {
  readonly id: string;
  readonly account: string;
  readonly name: string;
  readonly key_type: string;
  readonly fingerprint: string;
  readonly public_key: string;
  readonly created: string;
}

export interface VolumeRow {
  readonly id: string;
  readonly account: string;
  readonly size_gib: number;
  readonly volume_type: string;
  readonly state: 'available' | 'in-use';
  readonly created: string;
  readonly instance_id: string | null;
  readonly device: string | null;
  readonly attach_time: string | null;
}

export interface DiskRow {
  readonly kind: 'volume' | 'root';
  /** The volume's id, or the instance's for its root disk. */
  readonly id: string;
  readonly account: string;
  readonly size_gib: number;
}

export interface VpcRow {
  readonly id: string;
  readonly account: string;
  readonly cidr: string;
  readonly is_default: number;
  readonly created: string;
}

export interface SubnetRow {
  readonly id: string;
  readonly account: string;
  readonly vpc_id: string;
  readonly cidr: string;
  readonly zone: string;
  readonly default_for_az: number;
  readonly created: string;
}

export interface SecurityGroupRow {
  readonly id: string;
  readonly account: string;
  readonly vpc_id: string;
  readonly name: string;
  readonly description: string;
  readonly created: string;
}

/** One rule: a protocol and port range, and one peer (a CIDR block or a security group). */
export interface SecurityGroupRuleRow {
  readonly id: string;
  readonly account: string;
  readonly group_id: string;
  readonly egress: number;
  /** "tcp", "udp", "icmp", "icmpv6", "-1" (all) or another protocol's number. */
  readonly protocol: string;
  /** The port range (ICMP: type and code); null where the protocol has none. */
  readonly from_port: number | null;
  readonly to_port: number | null;
  readonly cidr: string | null;
  readonly ref_group: string | null;
  readonly description: string;
}

export interface NetworkInterfaceRow {
  readonly id: string;
  readonly account: string;
  readonly vpc_id: string;
  readonly subnet_id: string;
  /** The address the control plane allocated in the subnet (see network-interfaces.ts for what the guest has). */
  readonly private_ip: string;
  readonly instance_id: string;
  readonly attachment_id: string;
  readonly created: string;
}

export interface TagRow {
  readonly resource_id: string;
  readonly resource_type: string;
  readonly key: string;
  readonly value: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, access_key_id TEXT NOT NULL UNIQUE, sealed_secret BLOB NOT NULL,
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, reservation TEXT NOT NULL, image_id TEXT NOT NULL,
  instance_type TEXT NOT NULL, vcpus INTEGER NOT NULL, memory_mib INTEGER NOT NULL, root_gib INTEGER NOT NULL,
  state TEXT NOT NULL, transition_reason TEXT NOT NULL DEFAULT '', state_reason_code TEXT, state_reason_message TEXT,
  key_name TEXT, user_data TEXT, launch_index INTEGER NOT NULL, launch_time TEXT NOT NULL, client_token TEXT,
  private_ip TEXT, mac TEXT, cores TEXT NOT NULL DEFAULT '', terminated_at TEXT, hibernation_configured INTEGER NOT NULL DEFAULT 0,
  seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_account ON instances (account, seq);
CREATE TABLE IF NOT EXISTS key_pairs (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL, key_type TEXT NOT NULL, fingerprint TEXT NOT NULL,
  public_key TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (account, name));
CREATE TABLE IF NOT EXISTS tags (
  account TEXT NOT NULL, resource_id TEXT NOT NULL, resource_type TEXT NOT NULL, key TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (account, resource_id, key));
CREATE TABLE IF NOT EXISTS volumes (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, size_gib INTEGER NOT NULL, volume_type TEXT NOT NULL, state TEXT NOT NULL,
  created TEXT NOT NULL, instance_id TEXT, device TEXT, attach_time TEXT);
CREATE TABLE IF NOT EXISTS vpcs (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, cidr TEXT NOT NULL, is_default INTEGER NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS vpcs_by_account ON vpcs (account);
CREATE TABLE IF NOT EXISTS subnets (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, vpc_id TEXT NOT NULL, cidr TEXT NOT NULL, zone TEXT NOT NULL,
  default_for_az INTEGER NOT NULL, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS subnets_by_account ON subnets (account, vpc_id);
CREATE TABLE IF NOT EXISTS security_groups (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, vpc_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
  created TEXT NOT NULL, UNIQUE (vpc_id, name));
CREATE INDEX IF NOT EXISTS security_groups_by_account ON security_groups (account);
CREATE TABLE IF NOT EXISTS security_group_rules (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, group_id TEXT NOT NULL, egress INTEGER NOT NULL, protocol TEXT NOT NULL,
  from_port INTEGER, to_port INTEGER, cidr TEXT, ref_group TEXT, description TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS security_group_rules_by_group ON security_group_rules (group_id);
CREATE INDEX IF NOT EXISTS security_group_rules_by_peer ON security_group_rules (ref_group);
CREATE TABLE IF NOT EXISTS network_interfaces (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, vpc_id TEXT NOT NULL, subnet_id TEXT NOT NULL, private_ip TEXT NOT NULL,
  instance_id TEXT NOT NULL, attachment_id TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (subnet_id, private_ip));
CREATE INDEX IF NOT EXISTS network_interfaces_by_account ON network_interfaces (account);
CREATE TABLE IF NOT EXISTS network_interface_groups (
  interface_id TEXT NOT NULL, group_id TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (interface_id, group_id));
CREATE INDEX IF NOT EXISTS network_interface_groups_by_group ON network_interface_groups (group_id);
-- Accounts whose default VPC was made (once: an account may delete it afterwards, as on AWS).
CREATE TABLE IF NOT EXISTS default_networks (account TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS client_tokens (
  account TEXT NOT NULL, token TEXT NOT NULL, reservation TEXT NOT NULL, request TEXT NOT NULL,
  PRIMARY KEY (account, token));
`;

export class Store {
  readonly db: Database.Database;
  private seq: number;

  constructor(dataDir: string) {
    this.db = new Database(path.join(dataDir, 'state.sqlite'));
    this.db.pragma('journal_mode = WAL');
    // NORMAL would let the last commits before a power loss vanish after the API acknowledged them.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    // Data directories from before core placement.
    const columns = this.db.prepare('PRAGMA table_info(instances)').all() as Array<{ name: string }>;
    if (!columns.some((c) => c.name === 'cores')) this.db.exec("ALTER TABLE instances ADD COLUMN cores TEXT NOT NULL DEFAULT ''");
    // Data directories from before terminated instances were forgotten: theirs are forgotten counting from now.
    if (!columns.some((c) => c.name === 'terminated_at')) {
      this.db.exec('ALTER TABLE instances ADD COLUMN terminated_at TEXT');
      this.db.prepare("UPDATE instances SET terminated_at = ? WHERE state = 'terminated'").run(new Date().toISOString());
    }
    // Data directories from before hibernation: their instances were not configured for it.
    if (!columns.some((c) => c.name === 'hibernation_configured')) {
      this.db.exec('ALTER TABLE instances ADD COLUMN hibernation_configured INTEGER NOT NULL DEFAULT 0');
    }
    this.seq = (this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS s FROM instances').get() as { s: number }).s;
  }

  close(): void {
    this.db.close();
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // Accounts.
  addAccount(a: AccountRow): void {
    this.db.prepare('INSERT INTO accounts (id, name, access_key_id, sealed_secret, created) VALUES (?, ?, ?, ?, ?)')
      .run(a.id, a.name, a.access_key_id, a.sealed_secret, a.created);
  }

  accountByKey(accessKeyId: string): AccountRow | undefined {
    return this.db.prepare('SELECT * FROM accounts WHERE access_key_id = ?').get(accessKeyId) as AccountRow | undefined;
  }

  accountByName(name: string): AccountRow | undefined {
    return this.db.prepare('SELECT * FROM accounts WHERE name = ?').get(name) as AccountRow | undefined;
  }

  // Instances.
  addInstance(row: Omit<InstanceRow, 'seq'>): void {
    const r = { ...row, seq: ++this.seq };
    this.db.prepare(`INSERT INTO instances (id, account, reservation, image_id, instance_type, vcpus, memory_mib, root_gib,
      state, transition_reason, state_reason_code, state_reason_message, key_name, user_data, launch_index, launch_time,
      client_token, private_ip, mac, cores, terminated_at, hibernation_configured, seq) VALUES (@id, @account, @reservation,
      @image_id, @instance_type, @vcpus, @memory_mib, @root_gib, @state, @transition_reason, @state_reason_code,
      @state_reason_message, @key_name, @user_data, @launch_index, @launch_time, @client_token, @private_ip, @mac, @cores,
      @terminated_at, @hibernation_configured, @seq)`).run(r);
  }

  instance(account: string, id: string): InstanceRow | undefined {
    return this.db.prepare('SELECT * FROM instances WHERE account = ? AND id = ?').get(account, id) as InstanceRow | undefined;
  }

  /** Any account's instance: for the controller's events, never for an API answer. */
  instanceById(id: string): InstanceRow | undefined {
    return this.db.prepare('SELECT * FROM instances WHERE id = ?').get(id) as InstanceRow | undefined;
  }

  instances(account: string): InstanceRow[] {
    return this.db.prepare('SELECT * FROM instances WHERE account = ? ORDER BY seq').all(account) as InstanceRow[];
  }

  /** Instances in the given states, of every account (placement and recovery). */
  instancesIn(states: readonly InstanceStateName[]): InstanceRow[] {
    return this.db.prepare(`SELECT * FROM instances WHERE state IN (${states.map(() => '?').join(',')}) ORDER BY seq`)
      .all(...states) as InstanceRow[];
  }

  updateInstance(id: string, change: Partial<Pick<InstanceRow, 'state' | 'transition_reason' | 'state_reason_code'
    | 'state_reason_message' | 'private_ip' | 'mac' | 'launch_time' | 'cores' | 'terminated_at'>>): void {
    const keys = Object.keys(change);
    if (keys.length === 0) return;
    this.db.prepare(`UPDATE instances SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...change, id });
  }

  /**
   * Forgets instances terminated before `before` (an ISO time), with their tags and the client tokens of
   * reservations left empty; returns their ids.
   */
  purgeTerminated(before: string): string[] {
    return this.transaction(() => {
      const gone = this.db.prepare("SELECT id, account, reservation FROM instances WHERE state = 'terminated' AND terminated_at < ?")
        .all(before) as Array<{ id: string; account: string; reservation: string }>;
      for (const g of gone) {
        this.db.prepare('DELETE FROM instances WHERE id = ?').run(g.id);
        this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(g.account, g.id);
        this.db.prepare('DELETE FROM client_tokens WHERE account = ? AND reservation = ? AND NOT EXISTS (SELECT 1 FROM instances WHERE reservation = ?)')
          .run(g.account, g.reservation, g.reservation);
      }
      return gone.map((g) => g.id);
    });
  }

  /**
   * Every disk provisioned on the host, of every account: volumes, and the root disk of each instance that is not
   * terminated (created at its first launch, kept until it is terminated).
   */
  disks(): DiskRow[] {
    return this.db.prepare(`SELECT 'volume' AS kind, id, account, size_gib FROM volumes
      UNION ALL SELECT 'root' AS kind, id, account, root_gib AS size_gib FROM instances WHERE state != 'terminated'`).all() as DiskRow[];
  }

  // Client tokens (RunInstances idempotency).
  clientToken(account: string, token: string): { reservation: string; request: string } | undefined {
    return this.db.prepare('SELECT reservation, request FROM client_tokens WHERE account = ? AND token = ?').get(account, token) as
      { reservation: string; request: string } | undefined;
  }

  addClientToken(account: string, token: string, reservation: string, request: string): void {
    this.db.prepare('INSERT INTO client_tokens (account, token, reservation, request) VALUES (?, ?, ?, ?)').run(account, token, reservation, request);
  }

  // Key pairs.
  addKeyPair(k: KeyPairRow): void {
    this.db.prepare(`INSERT INTO key_pairs (id, account, name, key_type, fingerprint, public_key, created)
      VALUES (@id, @account, @name, @key_type, @fingerprint, @public_key, @created)`).run(k);
  }

  keyPairs(account: string): KeyPairRow[] {
    return this.db.prepare('SELECT * FROM key_pairs WHERE account = ? ORDER BY name').all(account) as KeyPairRow[];
  }

  keyPairByName(account: string, name: string): KeyPairRow | undefined {
    return this.db.prepare('SELECT * FROM key_pairs WHERE account = ? AND name = ?').get(account, name) as KeyPairRow | undefined;
  }

  deleteKeyPair(account: string, id: string): void {
    this.db.prepare('DELETE FROM key_pairs WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  // Volumes.
  addVolume(v: VolumeRow): void {
    this.db.prepare(`INSERT INTO volumes (id, account, size_gib, volume_type, state, created, instance_id, device, attach_time)
      VALUES (@id, @account, @size_gib, @volume_type, @state, @created, @instance_id, @device, @attach_time)`).run(v);
  }

  volume(account: string, id: string): VolumeRow | undefined {
    return this.db.prepare('SELECT * FROM volumes WHERE account = ? AND id = ?').get(account, id) as VolumeRow | undefined;
  }

  volumes(account: string): VolumeRow[] {
    return this.db.prepare('SELECT * FROM volumes WHERE account = ? ORDER BY created, id').all(account) as VolumeRow[];
  }

  /** The volumes attached to an instance, in the order they were attached. */
  volumesOf(instanceId: string): VolumeRow[] {
    return this.db.prepare('SELECT * FROM volumes WHERE instance_id = ? ORDER BY attach_time, id').all(instanceId) as VolumeRow[];
  }

  updateVolume(id: string, change: Partial<Pick<VolumeRow, 'state' | 'instance_id' | 'device' | 'attach_time'>>): void {
    const keys = Object.keys(change);
    if (keys.length === 0) return;
    this.db.prepare(`UPDATE volumes SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...change, id });
  }

  deleteVolume(account: string, id: string): void {
    this.db.prepare('DELETE FROM volumes WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  // The default VPC's one-time creation.
  hasDefaultNetwork(account: string): boolean {
    return this.db.prepare('SELECT 1 FROM default_networks WHERE account = ?').get(account) !== undefined;
  }

  markDefaultNetwork(account: string): void {
    this.db.prepare('INSERT INTO default_networks (account, created) VALUES (?, ?)').run(account, new Date().toISOString());
  }

  // VPCs.
  addVpc(v: VpcRow): void {
    this.db.prepare('INSERT INTO vpcs (id, account, cidr, is_default, created) VALUES (@id, @account, @cidr, @is_default, @created)').run(v);
  }

  vpc(account: string, id: string): VpcRow | undefined {
    return this.db.prepare('SELECT * FROM vpcs WHERE account = ? AND id = ?').get(account, id) as VpcRow | undefined;
  }

  vpcs(account: string): VpcRow[] {
    return this.db.prepare('SELECT * FROM vpcs WHERE account = ? ORDER BY created, id').all(account) as VpcRow[];
  }

  defaultVpc(account: string): VpcRow | undefined {
    return this.db.prepare('SELECT * FROM vpcs WHERE account = ? AND is_default = 1').get(account) as VpcRow | undefined;
  }

  /** Deletes a VPC with its security groups (the caller checked that only its default group is left). */
  deleteVpc(account: string, id: string): void {
    for (const g of this.securityGroups(account).filter((x) => x.vpc_id === id)) this.deleteSecurityGroup(account, g.id);
    this.db.prepare('DELETE FROM vpcs WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  // Subnets.
  addSubnet(s: SubnetRow): void {
    this.db.prepare(`INSERT INTO subnets (id, account, vpc_id, cidr, zone, default_for_az, created)
      VALUES (@id, @account, @vpc_id, @cidr, @zone, @default_for_az, @created)`).run(s);
  }

  subnet(account: string, id: string): SubnetRow | undefined {
    return this.db.prepare('SELECT * FROM subnets WHERE account = ? AND id = ?').get(account, id) as SubnetRow | undefined;
  }

  subnets(account: string): SubnetRow[] {
    return this.db.prepare('SELECT * FROM subnets WHERE account = ? ORDER BY created, id').all(account) as SubnetRow[];
  }

  deleteSubnet(account: string, id: string): void {
    this.db.prepare('DELETE FROM subnets WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  // Security groups and their rules.
  addSecurityGroup(g: SecurityGroupRow): void {
    this.db.prepare(`INSERT INTO security_groups (id, account, vpc_id, name, description, created)
      VALUES (@id, @account, @vpc_id, @name, @description, @created)`).run(g);
  }

  securityGroup(account: string, id: string): SecurityGroupRow | undefined {
    return this.db.prepare('SELECT * FROM security_groups WHERE account = ? AND id = ?').get(account, id) as SecurityGroupRow | undefined;
  }

  securityGroupByName(account: string, vpcId: string, name: string): SecurityGroupRow | undefined {
    return this.db.prepare('SELECT * FROM security_groups WHERE account = ? AND vpc_id = ? AND name = ?').get(account, vpcId, name) as
      SecurityGroupRow | undefined;
  }

  securityGroups(account: string): SecurityGroupRow[] {
    return this.db.prepare('SELECT * FROM security_groups WHERE account = ? ORDER BY created, id').all(account) as SecurityGroupRow[];
  }

  /** Deletes a group, its rules and its tags. */
  deleteSecurityGroup(account: string, id: string): void {
    for (const r of this.rulesOf(account, id)) this.deleteRule(account, r.id);
    this.db.prepare('DELETE FROM security_groups WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  addRule(r: SecurityGroupRuleRow): void {
    this.db.prepare(`INSERT INTO security_group_rules (id, account, group_id, egress, protocol, from_port, to_port, cidr, ref_group, description)
      VALUES (@id, @account, @group_id, @egress, @protocol, @from_port, @to_port, @cidr, @ref_group, @description)`).run(r);
  }

  /** A group's rules, both directions, in the order they were added. */
  rulesOf(account: string, groupId: string): SecurityGroupRuleRow[] {
    return this.db.prepare('SELECT * FROM security_group_rules WHERE account = ? AND group_id = ? ORDER BY rowid').all(account, groupId) as
      SecurityGroupRuleRow[];
  }

  rules(account: string): SecurityGroupRuleRow[] {
    return this.db.prepare('SELECT * FROM security_group_rules WHERE account = ? ORDER BY rowid').all(account) as SecurityGroupRuleRow[];
  }

  /** Rules of groups other than `groupId` that name it as their peer. */
  rulesReferring(account: string, groupId: string): SecurityGroupRuleRow[] {
    return this.db.prepare('SELECT * FROM security_group_rules WHERE account = ? AND ref_group = ? AND group_id != ?').all(account, groupId, groupId) as
      SecurityGroupRuleRow[];
  }

  deleteRule(account: string, id: string): void {
    this.db.prepare('DELETE FROM security_group_rules WHERE account = ? AND id = ?').run(account, id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(account, id);
  }

  // Network interfaces.
  addNetworkInterface(n: NetworkInterfaceRow, groups: readonly string[]): void {
    this.db.prepare(`INSERT INTO network_interfaces (id, account, vpc_id, subnet_id, private_ip, instance_id, attachment_id, created)
      VALUES (@id, @account, @vpc_id, @subnet_id, @private_ip, @instance_id, @attachment_id, @created)`).run(n);
    groups.forEach((g, i) => this.db.prepare('INSERT INTO network_interface_groups (interface_id, group_id, position) VALUES (?, ?, ?)').run(n.id, g, i));
  }

  networkInterfaces(account: string): NetworkInterfaceRow[] {
    return this.db.prepare('SELECT * FROM network_interfaces WHERE account = ? ORDER BY created, id').all(account) as NetworkInterfaceRow[];
  }

  networkInterfaceOf(instanceId: string): NetworkInterfaceRow | undefined {
    return this.db.prepare('SELECT * FROM network_interfaces WHERE instance_id = ?').get(instanceId) as NetworkInterfaceRow | undefined;
  }

  /** The addresses allocated in a subnet. */
  addressesIn(subnetId: string): string[] {
    return (this.db.prepare('SELECT private_ip FROM network_interfaces WHERE subnet_id = ?').all(subnetId) as Array<{ private_ip: string }>)
      .map((r) => r.private_ip);
  }

  /** Each interface's security groups, in the order they were given. */
  interfaceGroups(account: string): Map<string, string[]> {
    const rows = this.db.prepare(`SELECT g.interface_id, g.group_id FROM network_interface_groups g
      JOIN network_interfaces n ON n.id = g.interface_id WHERE n.account = ? ORDER BY g.interface_id, g.position`).all(account) as
      Array<{ interface_id: string; group_id: string }>;
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.interface_id, [...(out.get(r.interface_id) ?? []), r.group_id]);
    return out;
  }

  /** Whether any interface has this group. */
  groupInUse(groupId: string): boolean {
    return this.db.prepare('SELECT 1 FROM network_interface_groups WHERE group_id = ? LIMIT 1').get(groupId) !== undefined;
  }

  deleteNetworkInterfaceOf(instanceId: string): void {
    const n = this.networkInterfaceOf(instanceId);
    if (!n) return;
    this.db.prepare('DELETE FROM network_interface_groups WHERE interface_id = ?').run(n.id);
    this.db.prepare('DELETE FROM network_interfaces WHERE id = ?').run(n.id);
    this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ?').run(n.account, n.id);
  }

  // Tags.
  setTag(account: string, t: TagRow): void {
    this.db.prepare(`INSERT INTO tags (account, resource_id, resource_type, key, value) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (account, resource_id, key) DO UPDATE SET value = excluded.value`).run(account, t.resource_id, t.resource_type, t.key, t.value);
  }

  deleteTag(account: string, resourceId: string, key: string, value: string | undefined): void {
    if (value === undefined) this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ? AND key = ?').run(account, resourceId, key);
    else this.db.prepare('DELETE FROM tags WHERE account = ? AND resource_id = ? AND key = ? AND value = ?').run(account, resourceId, key, value);
  }

  tagsOf(account: string, resourceId: string): TagRow[] {
    return this.db.prepare('SELECT resource_id, resource_type, key, value FROM tags WHERE account = ? AND resource_id = ? ORDER BY key')
      .all(account, resourceId) as TagRow[];
  }

  tags(account: string): TagRow[] {
    return this.db.prepare('SELECT resource_id, resource_type, key, value FROM tags WHERE account = ? ORDER BY resource_id, key')
      .all(account) as TagRow[];
  }
}
