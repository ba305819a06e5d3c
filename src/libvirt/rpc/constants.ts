/**
 * Values of libvirt's public API enums that vmlet uses, as libvirt defines them
 * (include/libvirt/libvirt-domain.h, virterror.h; the same numbers travel on the wire).
 * libvirt never renumbers these, so they are safe to hard-code.
 */

/** virDomainState */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;
export const VIR_DOMAIN_NOSTATE = DomainState.NOSTATE;
export const VIR_DOMAIN_RUNNING = DomainState.RUNNING;
export const VIR_DOMAIN_BLOCKED = DomainState.BLOCKED;
export const VIR_DOMAIN_PAUSED = DomainState.PAUSED;
export const VIR_DOMAIN_SHUTDOWN = DomainState.SHUTDOWN;
export const VIR_DOMAIN_SHUTOFF = DomainState.SHUTOFF;
export const VIR_DOMAIN_CRASHED = DomainState.CRASHED;
export const VIR_DOMAIN_PMSUSPENDED = DomainState.PMSUSPENDED;

/** virDomainShutoffReason: the `reason` that accompanies state SHUTOFF. */
export const DomainShutoffReason = {
  UNKNOWN: 0,
  SHUTDOWN: 1,
  DESTROYED: 2,
  CRASHED: 3,
  MIGRATED: 4,
  SAVED: 5,
  FAILED: 6,
  FROM_SNAPSHOT: 7,
  DAEMON: 8,
} as const;

/** virDomainEventType: the `event` of a lifecycle event. */
export const DomainEvent = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;
export const VIR_DOMAIN_EVENT_DEFINED = DomainEvent.DEFINED;
export const VIR_DOMAIN_EVENT_UNDEFINED = DomainEvent.UNDEFINED;
export const VIR_DOMAIN_EVENT_STARTED = DomainEvent.STARTED;
export const VIR_DOMAIN_EVENT_SUSPENDED = DomainEvent.SUSPENDED;
export const VIR_DOMAIN_EVENT_RESUMED = DomainEvent.RESUMED;
export const VIR_DOMAIN_EVENT_STOPPED = DomainEvent.STOPPED;
export const VIR_DOMAIN_EVENT_SHUTDOWN = DomainEvent.SHUTDOWN;
export const VIR_DOMAIN_EVENT_PMSUSPENDED = DomainEvent.PMSUSPENDED;
export const VIR_DOMAIN_EVENT_CRASHED = DomainEvent.CRASHED;

/** virDomainEventStartedDetailType */
export const DomainEventStartedDetail = { BOOTED: 0, MIGRATED: 1, RESTORED: 2, FROM_SNAPSHOT: 3, WAKEUP: 4 } as const;
/** virDomainEventStoppedDetailType */
export const DomainEventStoppedDetail = {
  SHUTDOWN: 0,
  DESTROYED: 1,
  CRASHED: 2,
  MIGRATED: 3,
  SAVED: 4,
  FAILED: 5,
  FROM_SNAPSHOT: 6,
} as const;
/** virDomainEventShutdownDetailType */
export const DomainEventShutdownDetail = { FINISHED: 0, GUEST: 1, HOST: 2 } as const;
/** virDomainEventDefinedDetailType */
export const DomainEventDefinedDetail = { ADDED: 0, UPDATED: 1, RENAMED: 2, FROM_SNAPSHOT: 3 } as const;
/** virDomainEventUndefinedDetailType */
export const DomainEventUndefinedDetail = { REMOVED: 0, RENAMED: 1 } as const;
/** virDomainEventCrashedDetailType */
export const DomainEventCrashedDetail = { PANICKED: 0, CRASHLOADED: 1 } as const;

/** virDomainEventID: only the lifecycle event is used by vmlet. */
export const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;

/** virDomainUndefineFlagsValues */
export const DomainUndefineFlags = {
  MANAGED_SAVE: 1,
  SNAPSHOTS_METADATA: 2,
  NVRAM: 4,
  KEEP_NVRAM: 8,
  CHECKPOINTS_METADATA: 16,
  TPM: 32,
  KEEP_TPM: 64,
} as const;

/** virDomainShutdownFlagValues */
export const DomainShutdownFlags = {
  DEFAULT: 0,
  ACPI_POWER_BTN: 1,
  GUEST_AGENT: 2,
  INITCTL: 4,
  SIGNAL: 8,
  PARAVIRT: 16,
} as const;

/** virDomainDestroyFlagsValues */
export const DomainDestroyFlags = { DEFAULT: 0, GRACEFUL: 1, REMOVE_LOGS: 2 } as const;

/** virDomainModificationImpact, shared by the *Flags setters (memory, vcpus, scheduler). */
export const DomainAffect = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
/** virDomainMemoryModFlags beyond the AFFECT bits. */
export const DOMAIN_MEM_MAXIMUM = 4;
/** virDomainVcpuFlags beyond the AFFECT bits. */
export const DomainVcpuFlags = { MAXIMUM: 4, GUEST: 8, HOTPLUGGABLE: 16 } as const;

/** virDomainXMLFlags */
export const DomainXmlFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;

/** virConnectListAllDomainsFlags (0 lists every domain). */
export const ListDomainsFlags = {
  ACTIVE: 1,
  INACTIVE: 2,
  PERSISTENT: 4,
  TRANSIENT: 8,
  RUNNING: 16,
  PAUSED: 32,
  SHUTOFF: 64,
  OTHER: 128,
} as const;

/** virTypedParameterType */
export const TypedParamType = {
  INT: 1,
  UINT: 2,
  LLONG: 3,
  ULLONG: 4,
  DOUBLE: 5,
  BOOLEAN: 6,
  STRING: 7,
} as const;

/** Field names of the scheduler parameters vmlet sets (VIR_DOMAIN_SCHEDULER_*). */
export const SchedulerParam = {
  CPU_SHARES: 'cpu_shares', // ullong
  VCPU_PERIOD: 'vcpu_period', // ullong, microseconds
  VCPU_QUOTA: 'vcpu_quota', // llong, microseconds, -1 = unlimited
} as const;

/** virDomainMemoryStatTags */
export const MemoryStatTag = {
  SWAP_IN: 0,
  SWAP_OUT: 1,
  MAJOR_FAULT: 2,
  MINOR_FAULT: 3,
  UNUSED: 4,
  AVAILABLE: 5,
  ACTUAL_BALLOON: 6,
  RSS: 7,
  USABLE: 8,
  LAST_UPDATE: 9,
  DISK_CACHES: 10,
  HUGETLB_PGALLOC: 11,
  HUGETLB_PGFAIL: 12,
} as const;
/** VIR_DOMAIN_MEMORY_STAT_NR: how many stats vmlet asks for. */
export const MEMORY_STAT_NR = 13;

/** virErrorLevel */
export const ErrorLevel = { NONE: 0, WARNING: 1, ERROR: 2 } as const;

/** virErrorNumber: the codes vmlet tells apart (others are still reported with their number). */
export const VIR_ERR_OK = 0;
export const VIR_ERR_INTERNAL_ERROR = 1;
export const VIR_ERR_NO_MEMORY = 2;
export const VIR_ERR_NO_SUPPORT = 3;
export const VIR_ERR_NO_CONNECT = 5;
export const VIR_ERR_INVALID_CONN = 6;
export const VIR_ERR_INVALID_DOMAIN = 7;
export const VIR_ERR_INVALID_ARG = 8;
export const VIR_ERR_OPERATION_FAILED = 9;
export const VIR_ERR_XML_ERROR = 27;
export const VIR_ERR_DOM_EXIST = 28;
export const VIR_ERR_OPERATION_DENIED = 29;
export const VIR_ERR_XML_DETAIL = 35;
export const VIR_ERR_SYSTEM_ERROR = 38;
export const VIR_ERR_RPC = 39;
export const VIR_ERR_NO_DOMAIN = 42;
export const VIR_ERR_AUTH_FAILED = 45;
export const VIR_ERR_OPERATION_INVALID = 55;
export const VIR_ERR_CONFIG_UNSUPPORTED = 67;
export const VIR_ERR_OPERATION_TIMEOUT = 68;
export const VIR_ERR_ARGUMENT_UNSUPPORTED = 74;
export const VIR_ERR_OPERATION_ABORTED = 78;
export const VIR_ERR_OPERATION_UNSUPPORTED = 84;
export const VIR_ERR_AGENT_UNRESPONSIVE = 86;
export const VIR_ERR_RESOURCE_BUSY = 87;
export const VIR_ERR_ACCESS_DENIED = 88;
export const VIR_ERR_XML_INVALID_SCHEMA = 92;
export const VIR_ERR_AUTH_UNAVAILABLE = 94;
export const VIR_ERR_DEVICE_MISSING = 99;
export const VIR_ERR_MULTIPLE_DOMAINS = 110;
